"""Chatting through the core service with the real model: nothing the user wrote is ever lost."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace

import psutil

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


def test_regenerate_shows_the_new_answer_and_keeps_the_first_as_an_earlier_version(services, model):
    conversation = _chat(services, model, replace(SHORT, temperature=1.0, seed=-1))

    async def scenario():
        first = await services.chat.send(conversation.id, "Say a word.")
        second = await services.chat.regenerate(conversation.id)
        return first, second

    first, second = asyncio.run(scenario())
    messages = services.store.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].id == second.id != first.id
    assert second.status == "complete" and not second.superseded and second.replaces == first.id
    versions = services.store.versions(second.id)
    assert [(v.id, v.superseded) for v in versions] == [(first.id, True), (second.id, False)]
    assert versions[0].content == first.content and versions[0].status == "complete"
    assert services.store.versions(first.id) == versions


def test_stop_during_regenerate_keeps_the_complete_answer(services, model):
    conversation = _chat(services, model, SHORT)

    def stop_after_a_few(live):
        if len(live.text) > 10:
            services.chat.stop()

    async def scenario():
        first = await services.chat.send(conversation.id, "Tell me a long story about a dragon.")
        services.store.update_conversation(conversation.id, sampling=asdict(LONG))
        second = await services.chat.regenerate(conversation.id, on_text=stop_after_a_few)
        return first, second

    first, second = asyncio.run(scenario())
    assert second.status == "stopped" and second.superseded and second.content
    shown = services.store.messages(conversation.id)
    assert [(m.id, m.content, m.status) for m in shown][-1] == (first.id, first.content, "complete")
    asyncio.run(services.engine.stop())


def test_regenerate_with_the_engine_killed_keeps_the_answer_shown_and_sent(services, model):
    conversation = _chat(services, model, SHORT)

    def kill_engine(_live):
        if services.engine.is_alive():
            os.kill(services.engine.pid, signal.SIGKILL)

    async def scenario():
        first = await services.chat.send(conversation.id, "Name three fruits.")
        services.store.update_conversation(conversation.id, sampling=asdict(LONG))
        failed = await services.chat.regenerate(conversation.id, on_text=kill_engine)
        services.store.update_conversation(conversation.id, sampling=asdict(SHORT))
        follow_up = await services.chat.send(conversation.id, "Which is the sweetest?")
        # The same words in a chat of their own: what the model must have read.
        twin = _chat(services, model, SHORT)
        services.store.add_message(twin.id, "user", "Name three fruits.")
        services.store.add_message(twin.id, "assistant", first.content)
        alone = await services.chat.send(twin.id, "Which is the sweetest?")
        return first, failed, follow_up, alone

    first, failed, follow_up, alone = asyncio.run(scenario())
    assert failed.status == "error" and "killed (SIGKILL)" in failed.error and failed.superseded
    shown = services.store.messages(conversation.id)
    assert [m.content for m in shown] == ["Name three fruits.", first.content, "Which is the sweetest?",
                                          follow_up.content]
    assert shown[1].id == first.id and shown[1].status == "complete"
    # The model read the question, the first answer (never the broken one) and the follow-up.
    assert follow_up.tokens_in == alone.tokens_in
    asyncio.run(services.engine.stop())


def test_a_refused_key_during_regenerate_keeps_the_answer_and_sends_only_it(services, monkeypatch):
    from desktop.core import net, secrets
    from tests.cloud_server import CloudServer, network_address

    server = CloudServer(host=network_address() or "127.0.0.1")
    net.set_offline(False)
    monkeypatch.setenv(secrets.env_name("openai"), "sk-test-regenerate")
    services.providers.add("openai", base_url=server.url + "/v1")
    conversation = services.store.create_conversation(title="t", model="openai/gpt-4o-mini")
    try:
        first = asyncio.run(services.chat.send(conversation.id, "What is the capital of France?"))
        again = asyncio.run(services.chat.regenerate(conversation.id))
        assert [m["role"] for m in server.seen[-1].body["messages"]] == ["user"]  # not the answer replaced
        assert services.store.messages(conversation.id)[1].id == again.id
        first = again
        server.next = ["401"]
        refused = asyncio.run(services.chat.regenerate(conversation.id))
        asyncio.run(services.chat.send(conversation.id, "And of Spain?"))
    finally:
        server.stop()
    assert refused.status == "error" and "refused the key" in refused.error and refused.superseded
    assert services.store.messages(conversation.id)[1].id == first.id
    sent = server.seen[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "What is the capital of France?"), ("assistant", first.content), ("user", "And of Spain?")]


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
time.sleep(3)
released = time.time()  # still held: whatever is written after the lock is stamped later
db.execute("COMMIT")
print(released, flush=True)
"""


def test_a_locked_database_never_holds_up_the_window_and_the_answer_is_saved_after(services, model):
    conversation = _chat(services, model, replace(SHORT, max_tokens=300))
    holders = []

    def lock_once(_live):  # another program takes the database while the answer streams
        if not holders:
            holders.append(subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(services.store.path)],
                                            stdout=subprocess.PIPE, text=True))

    async def scenario():
        gaps, last = [], time.monotonic()

        async def ticks():  # what the window's thread would feel: how long the loop was held
            nonlocal last
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        ticker = asyncio.ensure_future(ticks())
        answer = await services.chat.send(conversation.id, "Write a very long story about the sea.",
                                          on_text=lock_once)
        ticker.cancel()
        return answer, sorted(gaps)

    answer, gaps = asyncio.run(scenario())
    released_at = float(holders[0].communicate()[0])
    assert answer.status == "complete" and answer.content
    saved = services.store.message(answer.id)
    assert saved.content == answer.content and saved.status == "complete"
    # The end of the answer met the lock, and was saved after it (SQLite's clock counts whole ms).
    assert saved.updated_at >= released_at - 0.001
    assert gaps[-1] < 0.5, gaps[-5:]  # never held up longer than one short wait for the lock
    asyncio.run(services.engine.stop())


HALFWAY_KILLED = """
import asyncio, sys
from dataclasses import asdict, replace
from pathlib import Path
from desktop.core.services import open_services
import psutil

from desktop.core.settings import LoadOptions, Sampling

services = open_services()
model = services.library.import_file(Path(sys.argv[1]), link=True)
services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=2))
chat = services.chat.new_conversation(model_id=model.id)

async def main():
    services.store.update_conversation(chat.id, sampling=asdict(Sampling(max_tokens=24, temperature=0, seed=1)))
    first = await services.chat.send(chat.id, "Tell me a very long story about a lighthouse keeper.")
    print(first.id, flush=True)
    services.store.update_conversation(chat.id, sampling=asdict(Sampling(max_tokens=3000, seed=3)))
    said = []
    def halfway(live):
        if len(live.text) > 150 and not said:
            said.append(True)
            print("halfway", flush=True)
    await services.chat.regenerate(chat.id, on_text=halfway)
    print("finished", flush=True)

asyncio.run(main())
"""


def test_killing_the_app_while_it_writes_an_answer_again_keeps_the_complete_one(home, model_file):
    app = subprocess.Popen([sys.executable, "-c", HALFWAY_KILLED, str(model_file)], stdout=subprocess.PIPE,
                           text=True)
    first_id = int(app.stdout.readline())
    assert app.stdout.readline() == "halfway\n"
    time.sleep(1)  # a save or two of the new answer
    engines = psutil.Process(app.pid).children()
    app.kill()
    app.wait()
    psutil.wait_procs(engines, timeout=10)

    from desktop.core.store import Store

    store = Store(home / "data" / "hearth.db")
    first = store.message(first_id)
    assert first.status == "complete" and first.content and not first.superseded
    shown = store.messages(first.conversation_id)
    assert [m.id for m in shown] == [first_id - 1, first_id]
    half = store.versions(first_id)[-1]
    assert half.replaces == first_id and half.superseded and half.status == "streaming" and half.content
    assert store.close_interrupted_answers() == 1  # its writer is gone
    assert store.message(half.id).status == "stopped"
    assert [m.id for m in store.messages(first.conversation_id)] == [first_id - 1, first_id]
    store.close()


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
