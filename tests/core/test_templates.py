"""Chat templates without a model: the format found from a file's vocabulary, the known formats,
valid turns, and templates that fail, refuse a system role, run for hours or poke at Python."""

from __future__ import annotations

import time

import pytest

from desktop.core import gguf, templates
from desktop.core.templates import FORMATS, PromptBuilder, Template, TemplateTimeout
from tests.gguf_forge import write_gguf

CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name three colors."}]

# Gemma 2's template, as published: no system role, and roles must alternate.
GEMMA2 = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
          "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
          "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
CHATML_TOKENS = {"<|im_start|>": 1, "<|im_end|>": 2}


def _vocab(*special: str) -> list[str]:
    """A vocabulary as a GGUF stores it: ordinary pieces, byte tokens, and the special tokens."""
    return ["a", "b", "<0x0A>", "▁the", *special, *(f"tok{i}" for i in range(100))]


@pytest.mark.parametrize(("tokens", "architecture", "expected"), [
    (["<|im_start|>", "<|im_end|>"], "llama", "chatml"),
    (["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "llama", "llama3"),
    (["<start_of_turn>", "<end_of_turn>"], "llama", "gemma"),
    (["[INST]", "[/INST]"], "llama", "mistral"),
    (["<|user|>", "<|assistant|>", "<|end|>", "<|system|>"], "llama", "phi3"),
    (["<｜User｜>", "<｜Assistant｜>", "<|im_start|>"], "qwen2", "deepseek"),  # R1 distills of Qwen
    (["[gMASK]", "<sop>", "<|user|>", "<|assistant|>"], "glm4", "glm4"),
    ([], "gemma2", "gemma"),
    ([], "qwen2", "chatml"),
    ([], "llama", "plain"),  # a base model with no chat markup
])
def test_a_file_without_a_template_gets_the_format_its_vocabulary_shows(tmp_path, tokens, architecture, expected):
    path = write_gguf(tmp_path / "model.gguf", {"general.architecture": architecture,
                                                "tokenizer.ggml.tokens": _vocab(*tokens)})
    info = gguf.read_info(path)
    assert not info.has_chat_template
    assert templates.detect(info.architecture, info.markup_tokens).format.name == expected


def test_the_starter_models_special_tokens_are_read_from_its_file(model_file):
    info = gguf.read_info(model_file)
    assert info.markup_tokens["<|im_start|>"] == 1 and info.markup_tokens["<|im_end|>"] == 2
    assert "<0x0A>" not in info.markup_tokens
    assert templates.detect(info.architecture, info.markup_tokens).format.name == "chatml"


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_known_format_writes_every_turn_and_ends_ready_for_the_answer(name):
    fmt = FORMATS[name]
    builder = PromptBuilder("", "", fmt.tokens, choice=name, eos_token="</s>")
    turns = [*CHAT, {"role": "assistant", "content": "Red, green, blue."}, {"role": "user", "content": "More?"}]
    prompt = builder.build(turns)
    for words in ("Answer briefly.", "Name three colors.", "Red, green, blue.", "More?"):
        assert prompt.text.count(words) == 1, (name, prompt.text)
    assert prompt.text.index("Answer briefly.") < prompt.text.index("Name three colors.")
    assert prompt.text.split("More?")[-1].strip()  # the marker that hands the turn to the model
    assert prompt.stops and all(prompt.stops)
    assert builder.system_folded == (not fmt.system)


def test_chatml_is_written_as_published():
    prompt = PromptBuilder("", "qwen2", ()).build(CHAT)
    assert prompt.text == ("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nName three colors."
                           "<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_end|>" in prompt.stops and "<|im_start|>" in prompt.stops


def test_a_stopped_or_failed_answer_never_leaves_two_user_turns_side_by_side():
    turns = templates.normalize_turns([
        {"role": "system", "content": "Be kind."},
        {"role": "assistant", "content": "Hello, I am an answer to nothing."},
        {"role": "user", "content": "First try"},
        {"role": "assistant", "content": ""},  # stopped before its first word
        {"role": "user", "content": "Second try"},
        {"role": "assistant", "content": "An answer."},
        {"role": "assistant", "content": "More of it."},
    ])
    assert turns == [{"role": "system", "content": "Be kind."},
                     {"role": "user", "content": "First try\n\nSecond try"},
                     {"role": "assistant", "content": "An answer.\n\nMore of it."}]


def test_a_template_with_no_system_role_gets_the_system_prompt_in_the_first_message():
    builder = PromptBuilder(GEMMA2, "gemma2", {"<start_of_turn>": 106}, bos_token="<bos>")
    assert builder.format_name == "model" and builder.system_folded and builder.notice == ""
    prompt = builder.build([*CHAT, {"role": "assistant", "content": ""}, {"role": "user", "content": "Again"}])
    assert prompt.text == ("<bos><start_of_turn>user\nAnswer briefly.\n\nName three colors.\n\nAgain<end_of_turn>\n"
                           "<start_of_turn>model\n")


def test_a_template_that_silently_drops_the_system_prompt_gets_it_folded_in():
    drops = ("{% for m in messages %}{% if m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
             "{% endif %}{% endfor %}<|im_start|>assistant\n")
    builder = PromptBuilder(drops, "llama", CHATML_TOKENS)
    assert builder.system_folded
    assert "Answer briefly.\n\nName three colors." in builder.build(CHAT).text


@pytest.mark.parametrize(("source", "says"), [
    ("{% for m in messages %}{{ m.content }", "could not be read (a mistake on line 1"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "tried something unsafe, which Hearth blocked"),
    ("{{ 'x'.ljust(10 ** 12) }}", "tried something unsafe"),
    ("{% set s = 'x' * 100000000 %}{{ s }}", "tried something unsafe"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "calls itself without end"),
    ("{% for m in messages %}{{ m.role }}{% endfor %}", "leaves out the user's words"),
])
def test_a_broken_or_hostile_template_gives_one_sentence_and_a_safe_format(source, says):
    builder = PromptBuilder(source, "llama", CHATML_TOKENS)
    assert builder.format_name == "chatml"
    assert says in builder.notice
    assert builder.notice.endswith("Using the ChatML format (found from its special tokens).")
    for jargon in ("__class__", "Traceback", "jinja2", "Error:", "unsafe attribute"):
        assert jargon not in builder.notice
    assert builder.build(CHAT).text.startswith("<|im_start|>system\nAnswer briefly.")


def test_a_template_that_would_run_for_hours_is_stopped_at_its_time_limit():
    started = time.monotonic()
    with pytest.raises(TemplateTimeout, match="ran for more than 0.5 s and was stopped"):
        Template(NESTED_LOOPS, time_limit=0.5).render(CHAT)
    assert time.monotonic() - started < 5  # stopped at the limit, not after 10^10 steps

    string_loops = "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateTimeout):
        Template(string_loops, time_limit=0.5).render(CHAT)
    builder = PromptBuilder(NESTED_LOOPS, "llama", CHATML_TOKENS, time_limit=0.5)
    assert "ran for more than 0.5 s and was stopped. Using the ChatML format" in builder.notice


def test_a_template_that_fails_on_one_conversation_gives_way_for_good_and_says_so():
    picky = ("{% for m in messages %}{% if 'forbidden' in m.content %}{{ raise_exception('I will not.') }}"
             "{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
    builder = PromptBuilder(picky, "llama", CHATML_TOKENS)
    assert builder.format_name == "model" and builder.build(CHAT).notice == ""
    prompt = builder.build([{"role": "user", "content": "a forbidden word"}])
    assert "refused this conversation: “I will not.”" in prompt.notice
    assert prompt.text == "<|im_start|>user\na forbidden word<|im_end|>\n<|im_start|>assistant\n"
    assert builder.format_name == "chatml" and builder.build(CHAT).notice == ""  # told once


def test_the_users_choice_of_format_wins_over_the_models_template():
    builder = PromptBuilder(GEMMA2, "gemma2", {"<start_of_turn>": 106}, choice="chatml")
    assert builder.format_name == "chatml" and builder.notice == ""
    assert builder.build(CHAT).text.startswith("<|im_start|>system")
    unknown = PromptBuilder("", "llama", CHATML_TOKENS, choice="nonsense")
    assert "does not know the chat format “nonsense”" in unknown.notice


def test_a_template_that_opens_the_thinking_block_is_noticed():
    r1 = ("{% for m in messages %}{% if m.role == 'user' %}<｜User｜>{{ m.content }}{% endif %}{% endfor %}"
          "<｜Assistant｜><think>\n")
    prompt = PromptBuilder(r1, "qwen2", {"<｜User｜>": 5}).build(CHAT)
    assert prompt.opens_thinking
    assert not PromptBuilder("", "qwen2", ()).build(CHAT).opens_thinking


def test_the_models_details_say_which_format_it_will_get_without_running_anything():
    assert templates.describe(GEMMA2, "llama", ()) == "The model's own chat template"
    assert templates.describe("", "llama", CHATML_TOKENS) == (
        "None in this file: ChatML, found from its special tokens")
    assert templates.describe("  \n", "llama", CHATML_TOKENS).startswith("None in this file: ChatML")
    assert templates.describe("{% for %}", "llama", CHATML_TOKENS) == (
        "The model's own chat template cannot be read: ChatML instead, found from its special tokens")
    assert templates.describe(NESTED_LOOPS, "llama", ()) == "The model's own chat template"  # never run here
    assert templates.describe(GEMMA2, "gemma2", (), choice="gemma") == "Gemma (chosen)"


def test_a_template_that_refuses_every_conversation_gives_way_at_the_first_with_one_sentence():
    builder = PromptBuilder("{{ raise_exception('No, thank you.') }}", "llama", CHATML_TOKENS)
    prompt = builder.build(CHAT)
    assert prompt.notice == ("This model's chat template refused this conversation: “No, thank you.”. "
                             "Using the ChatML format (found from its special tokens).")
    assert prompt.text.startswith("<|im_start|>system\nAnswer briefly.") and builder.format_name == "chatml"


def test_a_template_that_refuses_only_what_a_conversation_says_is_kept_for_other_conversations():
    picky = ("{% for m in messages %}{% if 'colors' in m.content %}{{ raise_exception('I do not talk about colors') }}"
             "{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
    builder = PromptBuilder(picky, "llama", CHATML_TOKENS)
    assert builder.format_name == "model" and builder.notice == ""
    prompt = builder.build([{"role": "system", "content": "Hi."}, {"role": "user", "content": "Name three animals."}])
    assert prompt.notice == "" and prompt.text.startswith("<|im_start|>system\nHi.<|im_end|>")


def test_a_real_world_template_with_tool_branches_works_when_no_tools_are_given():
    # Phi-4-mini's published shape: `tools is defined` branches, and `message.tool_calls` loops.
    phi4_like = ("{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
                 "{% elif tools is defined -%}{%- set system_message = '' -%}{%- endif %}"
                 "{%- if system_message is defined -%}{{- '<|system|>' + system_message -}}{%- if tools is defined -%}"
                 "{% for tool in tools %}{{- '<|tool|>' + (tool['function'] | tojson) + '<|/tool|>' -}}{% endfor %}"
                 "{%- endif -%}{{- '<|end|>' -}}{%- endif -%}{%- for message in messages -%}"
                 "{%- if message['role'] != 'system' -%}{{- '<|' + message['role'] + '|>' -}}"
                 "{%- if message.content -%}{{- message['content'] -}}{%- endif -%}"
                 "{%- for tool_call in message.tool_calls -%}{{- '<|tool_call|>' -}}{%- endfor -%}"
                 "{{- '<|end|>' -}}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}"
                 "{%- else -%}{{- eos_token -}}{%- endif -%}")
    builder = PromptBuilder(phi4_like, "phi3", {"<|assistant|>": 1, "<|end|>": 2})
    assert builder.format_name == "model" and builder.notice == ""
    assert builder.build(CHAT).text == "<|system|>Answer briefly.<|end|><|user|>Name three colors.<|end|><|assistant|>"


def test_a_filter_or_a_join_cannot_build_a_value_larger_than_any_prompt():
    for source in ["{% set s = 'ab ' * 1300000 %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s | wordwrap(2) }}",
                   "{% set s = 'x' * 3000000 %}{{ (s ~ s) | length }}"]:
        builder = PromptBuilder(source, "llama", CHATML_TOKENS)
        assert builder.format_name == "chatml" and "tried something unsafe" in builder.notice
    assert "asks for a loop far longer than any conversation" in PromptBuilder(
        "{% for i in range(3000000) %}{% endfor %}", "llama", CHATML_TOKENS).notice


def test_a_flipped_bit_in_a_header_length_is_called_damaged_not_short(model_file, tmp_path):
    data = bytearray(model_file.read_bytes()[:4096])
    # The first key's length is at byte 24 (after magic, version, tensor and key counts).
    data[24 + 5] ^= 0x40
    broken = tmp_path / "flipped.gguf"
    broken.write_bytes(bytes(data) + model_file.read_bytes()[4096:])
    with pytest.raises(gguf.GGUFError) as err:
        gguf.read_info(broken)
    assert "is damaged" in str(err.value) and "ends early" not in str(err.value)
    assert "download it again" in str(err.value)


def test_a_template_step_that_ignores_the_clock_ends_the_engine_which_then_says_why():
    import subprocess
    import sys

    from desktop.core.engine import explain_exit

    # The last line of defence in the engine child: a render still running past its limit.
    code = ("import time\nfrom desktop.core.engine_server import Watchdog\n"
            "with Watchdog(0.5).rendering():\n    time.sleep(20)\n")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 70 and templates.HUNG_LOG in child.stderr
    sentence = explain_exit(child.stderr, child.returncode, "Some Model")
    assert sentence.startswith("The chat template of “Some Model” ran on past its time limit")
    assert "From the next message on, this model uses a known format instead" in sentence
