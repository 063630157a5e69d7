"""Models as people download them, through the real engine: the starter model with no chat
template, with Gemma's "no system role" template, a template with a syntax error, one that runs
for hours, one that pokes at Python. Each answers cleanly, says what happened once, and Stop
always stops the engine's work, not only the window."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace
from pathlib import Path

import psutil
import pytest

from desktop.core.settings import LoadOptions, Sampling
from tests.core.test_templates import GEMMA2, NESTED_LOOPS
from tests.gguf_forge import with_chat_template

SHORT = Sampling(max_tokens=40, temperature=0.0, seed=1)
LONG = Sampling(max_tokens=600, temperature=0.8, seed=3)
MARKUP = ("<|im_start|>", "<|im_end|>", "[INST]", "<<SYS>>", "<start_of_turn>", "<|endoftext|>", "<s>", "</s>")
# Gemma 2's rules on SmolLM2's own markup: no system role, and roles must alternate.
NO_SYSTEM = GEMMA2.replace("<start_of_turn>", "<|im_start|>").replace("<end_of_turn>", "<|im_end|>").replace(
    "'model'", "'assistant'").replace("model\n", "assistant\n").replace("{{ bos_token }}", "")
# A template that is fine until a conversation mentions "slowly": then it would run for hours.
SLOW_ON_REQUEST = ("{% for m in messages %}{% if 'slowly' in m.content %}" + NESTED_LOOPS + "{% endif %}"
                   "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def forged(model_file, tmp_path_factory):
    """Copies of the real starter model with other templates, made once for this module."""
    folder = tmp_path_factory.mktemp("forged")
    made: dict[str, Path] = {}

    def make(name: str, template: str | None) -> Path:
        if name not in made:
            made[name] = with_chat_template(model_file, folder / f"SmolLM2-{name}.gguf", template)
        return made[name]

    return make


def _install(services, path: Path, sampling: Sampling = SHORT):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=2))
    record = services.library.import_file(path, link=True)
    conversation = services.chat.new_conversation(model_id=record.id)
    services.store.update_conversation(conversation.id, sampling=asdict(sampling))
    notices: list[str] = []
    services.chat.on_notice = notices.append
    return record, conversation, notices


def _clean(text: str) -> None:
    assert text.strip()
    for marker in MARKUP:
        assert marker not in text, text


def test_a_model_without_a_chat_template_answers_cleanly_and_says_which_format_it_uses(services, forged):
    _, conversation, notices = _install(services, forged("no-template", None))
    answer = asyncio.run(services.chat.send(conversation.id, "Name three colors."))
    assert answer.status == "complete"
    _clean(answer.content)
    assert any(colour in answer.content.lower() for colour in ("red", "blue", "green", "yellow"))
    assert notices == ["This file has no chat template; using the ChatML format (found from its special tokens)."]
    again = asyncio.run(services.chat.send(conversation.id, "And three animals?"))
    _clean(again.content)
    assert len(notices) == 1  # said once, not on every message
    asyncio.run(services.engine.stop())


def test_a_template_without_a_system_role_still_gets_the_system_prompt(services, forged):
    _, conversation, notices = _install(services, forged("no-system", NO_SYSTEM))
    services.store.update_conversation(conversation.id, system_prompt="Always answer in French.")

    async def scenario():
        first = await services.chat.send(conversation.id, "Say hello.")
        assert services.engine.prompt_info["system_folded"] is True
        # Stop before the first word: the empty stopped answer must not leave two user turns in a row.
        task = asyncio.ensure_future(services.chat.send(conversation.id, "Say goodbye."))
        while not services.chat.busy:
            await asyncio.sleep(0.005)
        services.chat.stop()
        stopped = await task
        again = await services.chat.send(conversation.id, "Say goodbye.")
        return first, stopped, again

    first, stopped, again = asyncio.run(scenario())
    assert first.status == "complete", first.error
    _clean(first.content)
    assert stopped.status == "stopped"
    assert again.status == "complete", again.error
    assert "alternate" not in again.error and "System role" not in again.error
    assert notices == []  # the model's own template is used: nothing to warn about
    asyncio.run(services.engine.stop())


@pytest.mark.parametrize(("name", "template", "says"), [
    ("syntax", "{% for m in messages %}{{ m.content }", "could not be read (a mistake on line 1"),
    ("hostile", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "tried something unsafe, which Hearth blocked"),
    ("hours", NESTED_LOOPS, "ran for more than 3 s and was stopped"),
])
@pytest.mark.timeout(120)
def test_a_broken_template_gives_one_sentence_and_the_model_still_answers(services, forged, name, template, says):
    _, conversation, notices = _install(services, forged(name, template))
    answer = asyncio.run(services.chat.send(conversation.id, "Name three colors."))
    assert answer.status == "complete", answer.error
    _clean(answer.content)
    assert len(notices) == 1 and says in notices[0]
    assert notices[0].endswith("Using the ChatML format (found from its special tokens).")
    assert "__class__" not in notices[0] and "Traceback" not in notices[0]
    asyncio.run(services.engine.stop())


@pytest.mark.timeout(120)
def test_a_template_that_hangs_on_one_message_is_stopped_and_the_next_message_works(services, forged):
    record, conversation, notices = _install(services, forged("slow-on-request", SLOW_ON_REQUEST))

    async def scenario():
        normal = await services.chat.send(conversation.id, "Hello!")
        slow = await services.chat.send(conversation.id, "Count slowly to three.")
        after = await services.chat.send(conversation.id, "Thanks!")
        return normal, slow, after

    normal, slow, after = asyncio.run(scenario())
    assert normal.status == slow.status == after.status == "complete"
    assert notices == ["This model's chat template ran for more than 3 s and was stopped. "
                       "Using the ChatML format (found from its special tokens)."]
    _clean(after.content)
    assert services.engine.state == "ready"
    asyncio.run(services.engine.stop())


def test_stop_while_a_long_prompt_is_read_stops_the_engine_too(services, model):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=4096, n_threads=2))
    conversation = services.chat.new_conversation(model_id=model.id)
    services.store.update_conversation(conversation.id, sampling=asdict(LONG))
    long_prompt = "Summarise this. " + "The river runs past the old mill and the quiet town. " * 250

    async def scenario():
        await services.engine.ensure(model, services.settings.load)
        engine = psutil.Process(services.engine.pid)
        task = asyncio.ensure_future(services.chat.send(conversation.id, long_prompt))
        while not services.chat.busy:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)  # the engine is reading the prompt
        services.chat.stop()
        stopped = await task
        await asyncio.sleep(0.3)
        before = sum(engine.cpu_times()[:2])
        await asyncio.sleep(1.0)
        busy_s = sum(engine.cpu_times()[:2]) - before
        services.store.update_conversation(conversation.id, sampling=asdict(SHORT))
        next_answer = await services.chat.send(conversation.id, "Say hi.")
        return stopped, busy_s, next_answer

    stopped, busy_s, next_answer = asyncio.run(scenario())
    assert stopped.status == "stopped" and stopped.content == ""
    assert busy_s < 0.3  # the engine went quiet: it did not read on to the end of the prompt
    assert next_answer.status == "complete" and next_answer.content
    asyncio.run(services.engine.stop())


def test_the_length_limit_is_said_not_hidden(services, model):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=2))
    conversation = services.chat.new_conversation(model_id=model.id)
    services.store.update_conversation(conversation.id, sampling=asdict(replace(SHORT, max_tokens=5)))
    answer = asyncio.run(services.chat.send(conversation.id, "Write a long story about a lighthouse."))
    assert answer.status == "complete" and answer.stop_reason == "length"
    assert answer.tokens_out == 5
    assert services.store.message(answer.id).stop_reason == "length"
    asyncio.run(services.engine.stop())


def test_a_template_that_opens_the_thinking_block_puts_the_models_first_words_in_thinking(services, forged):
    """DeepSeek-R1 distills' templates end the prompt with "<think>": the model's words start inside
    the block. SmolLM2 never closes it, so all it writes is thinking and none of it is the answer."""
    opens = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    _, conversation, notices = _install(services, forged("opens-thinking", opens))
    answer = asyncio.run(services.chat.send(conversation.id, "Tell me about cats."))
    assert answer.status == "complete" and notices == []
    assert answer.thinking.strip() and answer.content == ""
    assert "<think>" not in answer.thinking and answer.thinking_ms is not None
    asyncio.run(services.engine.stop())


def test_with_no_seed_set_each_engine_start_writes_something_else(services, model):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=1024, n_threads=2))
    answers = []
    for _ in range(3):
        conversation = services.chat.new_conversation(model_id=model.id)
        services.store.update_conversation(conversation.id, sampling=asdict(Sampling(
            max_tokens=20, temperature=1.0, seed=-1)))
        answers.append(asyncio.run(services.chat.send(conversation.id, "Write a short poem.")).content)
        asyncio.run(services.engine.stop())  # a fresh engine each time, as after a restart of Hearth
    assert len(set(answers)) == 3, answers


def test_a_template_the_engine_had_to_kill_is_not_tried_again_next_time(services, model):
    services.engine.on_template_hung(model, "chatml")
    assert services.store.model(model.id).chat_format == "chatml"
    services.store.set_chat_format(model.id, "gemma")
    services.engine.on_template_hung(services.store.model(model.id), "chatml")  # the user's own choice stays
    assert services.store.model(model.id).chat_format == "gemma"


def test_stopping_again_and_again_never_leaves_two_answers_writing_at_once(services, model):
    """Stop closes the connection; the engine must finish the stopped answer before it starts the
    next one (two decodes in one llama.cpp context crash it)."""
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=2))
    conversation = services.chat.new_conversation(model_id=model.id)
    services.store.update_conversation(conversation.id, sampling=asdict(LONG))

    async def scenario():
        pid = None
        for i in range(8):
            task = asyncio.ensure_future(services.chat.send(conversation.id, f"Tell me story number {i}."))
            while not services.chat.busy:
                await asyncio.sleep(0.002)
            pid = pid or services.engine.pid
            await asyncio.sleep(0.05 * (i % 4))  # Stop while the prompt is read, or a few words in
            services.chat.stop()
            assert (await task).status == "stopped"
        services.store.update_conversation(conversation.id, sampling=asdict(SHORT))
        last = await services.chat.send(conversation.id, "Say hi.")
        return pid, last

    pid, last = asyncio.run(scenario())
    assert last.status == "complete", last.error
    assert services.engine.pid == pid  # the same engine all along: it never crashed
    asyncio.run(services.engine.stop())
