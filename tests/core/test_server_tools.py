"""Tool calling through Hearth's local server, with the openai SDK: a model whose chat template
takes tools (the starter model with a Qwen 2.5-style template written from its published
structure) is offered them in its prompt and its calls come back as `tool_calls`; a model whose
template has none gets a clear 400 unless the request names the function to call; the calls
models write in their publishers' formats are read back; requests the server cannot serve are
refused with a sentence, never half served."""

from __future__ import annotations

import json

import openai
import pytest

from desktop.core.server.tools import ToolsError, parse_calls, tool_request
from tests.core.test_server import serve, small  # noqa: F401 - fixtures
from tests.gguf_forge import with_chat_template

# The structure of Qwen 2.5's template (tools listed in the system turn inside <tools>, calls in
# <tool_call> blocks, results as <tool_response> in a user turn), on SmolLM2's own markup.
TOOLS_TEMPLATE = """
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}{% else %}You are a helpful assistant.{% endif %}

# Tools

You are provided with function signatures within <tools></tools> XML tags:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city, now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def tools_model_file(model_file, tmp_path_factory):
    return with_chat_template(model_file, tmp_path_factory.mktemp("tools") / "SmolLM2-tools.gguf", TOOLS_TEMPLATE)


@pytest.fixture
def with_tools(services, small, tools_model_file):  # noqa: F811 - the fixture imported above
    return services.library.import_file(tools_model_file, link=True)


def _client(running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=120)


def test_a_model_whose_template_takes_tools_reads_them_and_its_calls_come_back(serve, with_tools):  # noqa: F811
    client = _client(serve())
    plain = client.chat.completions.create(model=with_tools.id, max_tokens=4, temperature=0, messages=ASK)
    offered = client.chat.completions.create(model=with_tools.id, max_tokens=24, temperature=0, messages=ASK,
                                             tools=[WEATHER])
    # The tools are in the prompt: its description and schema cost tokens.
    assert offered.usage.prompt_tokens > plain.usage.prompt_tokens + 40
    message = offered.choices[0].message
    assert message.content or message.tool_calls  # the model chose; either is an answer

    forced = client.chat.completions.create(model=with_tools.id, max_tokens=40, temperature=0, messages=ASK,
                                            tools=[WEATHER], tool_choice="required")
    call = forced.choices[0].message.tool_calls[0]
    assert forced.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    city = json.loads(call.function.arguments)["city"]
    assert isinstance(city, str)

    # The app runs the tool and sends the result back: the template renders the whole round.
    after = client.chat.completions.create(
        model=with_tools.id, max_tokens=12, temperature=0, tools=[WEATHER],
        messages=[*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                  {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": city, "sky": "sunny"})}])
    assert after.choices[0].message.content or after.choices[0].message.tool_calls
    assert after.usage.prompt_tokens > forced.usage.prompt_tokens


def test_a_streamed_forced_call_arrives_as_tool_call_chunks(serve, with_tools):  # noqa: F811
    client = _client(serve())
    chunks = list(client.chat.completions.create(
        model=with_tools.id, max_tokens=40, temperature=0, messages=ASK, stream=True, tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream_options={"include_usage": True}))
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert [c.function.name for c in calls] == ["get_weather"]
    assert "city" in json.loads(calls[0].function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0


def test_a_template_without_tools_gets_a_clear_400_unless_the_function_is_named(serve, small):  # noqa: F811
    client = _client(serve())
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=small.id, max_tokens=8, messages=ASK, tools=[WEATHER])
    assert refused.value.code == "tools_not_supported"
    assert "has no place for tools" in refused.value.body["message"]
    # tool_choice "none": no tools offered, an ordinary answer.
    plain = client.chat.completions.create(model=small.id, max_tokens=4, messages=ASK, tools=[WEATHER],
                                           tool_choice="none")
    assert plain.choices[0].message.content and not plain.choices[0].message.tool_calls


def test_requests_the_server_cannot_serve_are_refused_in_a_sentence(serve, small):  # noqa: F811
    running = serve()
    client = _client(running)
    for extra, param in (({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
                         ({"tools": [{"type": "code_interpreter"}]}, "tools"),
                         ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
                          "tool_choice")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=small.id, max_tokens=4, messages=ASK, **extra)
        assert refused.value.body["param"] == param and refused.value.body["message"].endswith(".")
    with pytest.raises(openai.BadRequestError, match="read text only"):
        client.chat.completions.create(model=small.id, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    # Text parts are joined; `developer` is the system role.
    parts = client.chat.completions.create(model=small.id, max_tokens=4, messages=[
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello."}]}])
    assert parts.choices[0].message.content
    assert [r.status for r in running.records][-1] == 200


@pytest.mark.parametrize(("text", "content", "calls"), [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', "",
     [("get_weather", {"city": "Paris"})]),
    ('Let me look.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n'
     '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>', "Let me look.",
     [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]),
    ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Lima"}}', "", [("get_weather", {"city": "Lima"})]),
    ('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Kyiv"}}]', "", [("get_weather", {"city": "Kyiv"})]),
    ('[TOOL_CALLS]get_weather[ARGS]{"city": "Bern"}', "", [("get_weather", {"city": "Bern"})]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Quito\\"}"}', "", [("get_weather", {"city": "Quito"})]),
    # Not calls: a tool nobody offered, arguments that are not an object, JSON that is an answer.
    ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', None, []),
    ('{"name": "get_weather", "arguments": [1, 2]}', None, []),
    ('{"city": "Paris", "weather": "sunny"}', None, []),
    ("It is sunny in Paris.", None, []),
])
def test_calls_are_read_from_the_formats_models_write(text, content, calls):
    left, found = parse_calls(text, frozenset({"get_weather"}))
    assert left == (text if content is None else content)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in found] == calls
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in found)


def test_legacy_functions_are_tools_and_bad_ones_are_named():
    request = tool_request({"functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}})
    assert request.forced and request.choice == "get_weather" and request.names == {"get_weather"}
    assert not tool_request({"tools": [WEATHER], "tool_choice": "none"}).offered
    with pytest.raises(ToolsError, match="tool 1 needs a name"):
        tool_request({"tools": [{"type": "function", "function": {"name": "../etc/passwd"}}]})


def test_ollama_clients_offer_tools_to_a_model_that_takes_them_and_hear_no_from_one_that_does_not(
        serve, small, with_tools):  # noqa: F811
    import ollama

    client = ollama.Client(host=serve().url)
    plain = client.chat(model=with_tools.id, messages=ASK, stream=False, options={"num_predict": 4, "temperature": 0})
    offered = client.chat(model=with_tools.id, messages=ASK, tools=[WEATHER], stream=False,
                          options={"num_predict": 24, "temperature": 0})
    assert offered.prompt_eval_count > plain.prompt_eval_count + 40  # the tools are in the prompt
    assert offered.message.content or offered.message.tool_calls
    # A round with the app's tool result renders too (Ollama's shape: arguments as an object).
    after = client.chat(model=with_tools.id, tools=[WEATHER], stream=False, options={"num_predict": 8},
                        messages=[*ASK, {"role": "assistant", "content": "", "tool_calls": [
                            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                                  {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert after.prompt_eval_count > offered.prompt_eval_count
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=small.id, messages=ASK, tools=[WEATHER], stream=False)
    assert refused.value.status_code == 400 and "does not support tools" in refused.value.error
