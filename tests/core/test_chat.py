"""Chatting through the core service with the real model: nothing the user wrote is ever lost."""

import asyncio
import os
import signal
import time
from dataclasses import asdict, replace

from desktop.core.settings import LoadOptions, Sampling

LONG = Sampling(max_tokens=1500, temperature=0.8, seed=3)
SHORT = Sampling(max_tokens=24, temperature=0.0, seed=1)


def _chat(services, model, sampling: Sampling, n_ctx: int = 2048):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=n_ctx, n_threads=2))
    conversation = services.chat.new_conversation(model_id=model.id)
    services.store.update_conversation(conversation.id, sampling=asdict(sampling))
    return conversation


def test_an_answer_streams_and_is_saved_with_its_figures(services, model):
    conversation = _chat(services, model, SHORT)
    seen = []  # the answer as the window would draw it, each time more arrived
    answer = asyncio.run(services.chat.send(conversation.id, "Name three colours.",
                                            on_text=lambda live: seen.append(live.text)))
    messages = services.store.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "Name three colours."
    assert answer.status == "complete"
    assert answer.content == seen[-1] != ""
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert answer.model == "SmolLM2-135M-Instruct"
    assert answer.processed_on == "this machine"
    assert answer.bytes_sent == 0
    assert 0 < answer.tokens_out <= 24
    assert answer.tokens_in > 10  # the system prompt and the question, through the chat template
    assert answer.ttft_ms > 0 and answer.tokens_per_s > 0
    assert services.store.conversation(conversation.id).title == "Name three colours."


def test_the_users_message_is_on_disk_before_the_first_token(services, model):
    conversation = _chat(services, model, SHORT)
    seen = []

    def first_token(_text):
        if not seen:
            seen.append([(m.role, m.status) for m in services.store.messages(conversation.id)])

    asyncio.run(services.chat.send(conversation.id, "Hello!", on_text=first_token))
    assert seen[0] == [("user", "complete"), ("assistant", "streaming")]


def test_the_answer_is_saved_while_it_streams(services, model):
    conversation = _chat(services, model, LONG)
    saved_during = []
    first = []

    def watch(_text):
        first.append(time.monotonic())
        if first[-1] - first[0] > 1.1 and not saved_during:  # one second after the first token
            saved_during.append(services.store.messages(conversation.id)[-1].content)
            services.chat.stop()

    answer = asyncio.run(services.chat.send(conversation.id, "Tell me a long story about a dragon.",
                                            on_text=watch))
    assert saved_during and len(saved_during[0]) > 0
    assert answer.content.startswith(saved_during[0])


def test_stop_ends_the_answer_at_once_and_keeps_what_arrived(services, model):
    conversation = _chat(services, model, LONG)
    seen = []

    def stop_after_a_few(live):
        seen.append(live.text)
        if len(seen) == 5:
            services.chat.stop()

    answer = asyncio.run(services.chat.send(conversation.id, "Write a very long essay about rivers.",
                                            on_text=stop_after_a_few))
    assert answer.status == "stopped"
    assert answer.content == seen[-1]  # nothing arrived after Stop
    assert 5 <= answer.tokens_out < LONG.max_tokens
    assert services.store.message(answer.id).content == answer.content
    assert not services.chat.busy


def test_regenerate_replaces_the_last_answer(services, model):
    conversation = _chat(services, model, replace(SHORT, temperature=1.0, seed=-1))

    async def scenario():
        first = await services.chat.send(conversation.id, "Say a word.")
        second = await services.chat.regenerate(conversation.id)
        return first, second

    first, second = asyncio.run(scenario())
    messages = services.store.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].id == second.id != first.id
    assert second.status == "complete"


def test_a_killed_engine_becomes_a_sentence_and_the_next_message_restarts_it(services, model):
    conversation = _chat(services, model, LONG)

    killed = []

    def kill_engine(_text):
        if not killed:
            killed.append(services.engine.pid)
            os.kill(services.engine.pid, signal.SIGKILL)

    async def scenario():
        broken = await services.chat.send(conversation.id, "Write a long poem.", on_text=kill_engine)
        services.store.update_conversation(conversation.id, sampling=asdict(SHORT))
        recovered = await services.chat.send(conversation.id, "Are you back?")
        return broken, recovered

    broken, recovered = asyncio.run(scenario())
    assert broken.status == "error"
    assert "killed (SIGKILL)" in broken.error
    assert "Your conversation is kept" in broken.error
    assert "Traceback" not in broken.error
    assert recovered.status == "complete" and recovered.content
    contents = [m.content for m in services.store.messages(conversation.id) if m.role == "user"]
    assert contents == ["Write a long poem.", "Are you back?"]
    asyncio.run(services.engine.stop())


def test_a_long_conversation_is_trimmed_to_fit_the_context(services, model):
    conversation = _chat(services, model, replace(SHORT, max_tokens=32), n_ctx=512)
    filler = "The quick brown fox jumps over the lazy dog. " * 12  # about 120 tokens each
    for _ in range(6):
        services.store.add_message(conversation.id, "user", filler)
        services.store.add_message(conversation.id, "assistant", filler)
    answer = asyncio.run(services.chat.send(conversation.id, "Summarise in one word."))
    assert answer.status == "complete"
    assert services.chat.trimmed_messages >= 8
    assert answer.tokens_in + answer.tokens_out <= 512
    asyncio.run(services.engine.stop())


def test_a_message_longer_than_the_context_gets_a_sentence(services, model):
    conversation = _chat(services, model, replace(SHORT, max_tokens=64), n_ctx=256)
    answer = asyncio.run(services.chat.send(conversation.id, "word " * 400))
    assert answer.status == "error"
    assert "too long for this model's context of 256 tokens" in answer.error
    assert services.store.messages(conversation.id)[0].content == "word " * 400
    asyncio.run(services.engine.stop())
