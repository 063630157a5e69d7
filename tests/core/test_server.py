"""The local API server driven by clients nobody here wrote: the openai SDK against a real
LocalServer on a free port with the real SmolLM2 model, and raw httpx for the security checks."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import replace

import httpx
import openai
import psutil
import pytest

from desktop.core.server import LocalServer, ServerConfig, ServerError
from desktop.core.settings import LoadOptions
from tests.gguf_forge import write_gguf

N_CTX = 512


@pytest.fixture
def small(services, model):
    """The starter model, loaded with a small context (so a long prompt is easy to write)."""
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=N_CTX, n_threads=2))
    return model


@pytest.fixture
def serve(server_threads, small):
    """`start(**config)`: a server on a free port, the starter model installed with N_CTX."""
    return server_threads


def _engine_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "engine" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]


def test_an_openai_sdk_app_lists_chats_streams_completes_and_gets_json(serve, small):
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="not-needed-on-loopback", max_retries=0)

    assert [m.id for m in client.models.list()] == [small.id]

    answer = client.chat.completions.create(model=small.id, max_tokens=8, temperature=0,
                                            messages=[{"role": "user", "content": "Say hello."}])
    assert answer.model == small.id
    assert answer.choices[0].message.content
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0

    stream = client.chat.completions.create(model=small.id, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Count to three."}])
    chunks = list(stream)
    words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert words.strip()
    assert {c.model for c in chunks} == {small.id}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    completion = client.completions.create(model=small.id, prompt="The capital of France is", max_tokens=5)
    assert completion.model == small.id and completion.choices[0].text

    as_json = client.chat.completions.create(
        model=small.id, max_tokens=60, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with a key name."}])
    assert isinstance(json.loads(as_json.choices[0].message.content), dict)

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                               "founded": {"type": "integer"}},
              "required": ["city", "founded"]}
    by_schema = client.chat.completions.create(
        model=small.id, max_tokens=60, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
        messages=[{"role": "user", "content": "Name a city and the year it was founded."}])
    place = json.loads(by_schema.choices[0].message.content)
    assert set(place) == {"city", "founded"}
    assert isinstance(place["city"], str) and len(place["city"]) <= 24 and isinstance(place["founded"], int)

    logged = [r for r in running.records if r.path == "/v1/chat/completions"]
    assert len(logged) == 4 and all(r.model == small.id and r.status == 200 for r in logged)
    assert all(r.tokens_in and r.tokens_out for r in logged)
    assert [m.id for m in running.server.loaded()] == [small.id]
    assert running.server.pool.loads == 1


def test_a_prompt_longer_than_the_context_is_refused_with_both_numbers_never_cut(serve, small):
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
    long_text = "apple " * 2000
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=small.id, messages=[{"role": "user", "content": long_text}])
    error = refused.value.body
    assert refused.value.code == "context_length_exceeded"
    assert str(N_CTX) in error["message"]
    prompt_tokens = int(error["message"].split("the prompt is ")[1].split()[0])
    assert prompt_tokens > 2000
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|maximum context length"):
        client.completions.create(model=small.id, prompt=long_text, stream=True)

    # max_tokens beyond what is left is capped, and the answer says so.
    raw = client.chat.completions.with_raw_response.create(
        model=small.id, max_tokens=100_000, messages=[{"role": "user", "content": "Hi"}])
    asked, given = raw.headers["x-hearth-max-tokens-capped"].split(" -> ")
    assert int(asked) == 100_000 and 0 < int(given) < N_CTX


def test_eight_requests_arriving_together_are_all_answered_by_one_engine_load(serve, small):
    running = serve()
    before = {p.pid for p in _engine_children()}

    async def ask_all():
        client = openai.AsyncOpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=300)
        asks = [client.chat.completions.create(model=small.id, max_tokens=6,
                                               messages=[{"role": "user", "content": f"Say {i}."}])
                for i in range(8)]
        try:
            return await asyncio.gather(*asks)
        finally:
            await client.close()

    answers = asyncio.run(ask_all())
    assert len(answers) == 8 and all(a.choices[0].message.content is not None for a in answers)
    assert running.server.pool.loads == 1
    assert len({p.pid for p in _engine_children()} - before) == 1
    pids = running.server.pool.engine_pids()
    running.call(running.server.stop())
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids)


def test_the_window_engine_holding_the_model_is_shared_not_loaded_again(services, serve, small):
    running = serve()
    running.call(services.engine.ensure(small, services.settings.load))
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
        answer = client.chat.completions.create(model=small.id, max_tokens=4,
                                                messages=[{"role": "user", "content": "Hi"}])
        assert answer.model == small.id
        assert running.server.pool.loads == 0
        running.call(running.server.stop())
        assert services.engine.is_alive()  # the server never unloads the window's model
    finally:
        running.call(services.engine.stop())


def test_the_window_takes_over_the_model_an_app_loaded_rather_than_loading_it_again(services, serve, small):
    """An app loaded the model through the server; the user then opens a chat with it: the
    window uses that engine (no second child, no second copy in memory) and the app goes on
    using it, shared, until the window is done with it."""
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=120)
    ask = {"model": small.id, "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}
    client.chat.completions.create(**ask)
    loaded_by_app = running.server.pool.engine_pids()
    assert len(loaded_by_app) == 1
    try:
        running.call(services.engine.ensure(small, services.settings.load))
        assert services.engine.pid == loaded_by_app[0]  # the same child, handed over
        assert "already loaded by the local server" in services.engine.state_detail
        assert running.server.pool.engine_pids() == []
        assert [p.pid for p in _engine_children()] == loaded_by_app
        client.chat.completions.create(**ask)  # the app is answered by the window's engine now
        assert running.server.pool.loads == 1
        assert [(m.id, m.shared) for m in running.loaded()] in ([], [(small.id, True)])
        running.call(running.server.stop())
        assert services.engine.is_alive()  # stopping the server leaves the window's model alone
    finally:
        running.call(services.engine.stop())
    assert not _engine_children()


def test_idle_models_the_server_loaded_go_to_make_room(services, serve, small):
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=120)
    client.chat.completions.create(model=small.id, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert running.server.pool.engine_pids()
    assert running.call(services.engine.make_room()) is True  # what the window asks when memory is short
    assert running.server.pool.engine_pids() == [] and not _engine_children()
    assert running.call(services.engine.make_room()) is False  # nothing idle is left to unload


def test_a_model_that_is_not_installed_is_a_404_with_a_sentence(serve):
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="No model called “gpt-4o” is installed"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="/etc/passwd", messages=[{"role": "user", "content": "Hi"}])


def test_an_idle_model_is_unloaded_after_its_ttl(serve, small):
    running = serve()
    answer = httpx.post(running.url + "/v1/chat/completions", timeout=120,
                        json={"model": small.id, "ttl": 0.3, "max_tokens": 2,
                              "messages": [{"role": "user", "content": "Hi"}]})
    assert answer.status_code == 200
    pids = running.server.pool.engine_pids()
    assert len(pids) == 1

    async def wait_unloaded():
        for _ in range(100):
            if not running.server.loaded():
                return True
            await asyncio.sleep(0.05)
        return False

    assert running.call(wait_unloaded())
    assert running.server.pool.engine_pids() == []


def test_a_web_page_on_another_host_name_cannot_reach_the_server(serve):
    running = serve()
    refused = httpx.get(running.url + "/v1/models", headers={"Host": "evil.example:4784"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "host_not_allowed"
    for host in ("localhost", "127.0.0.1", f"127.0.0.1:{running.server.port}"):
        assert httpx.get(running.url + "/v1/models", headers={"Host": host}).status_code == 200


def test_cors_is_closed_unless_the_origin_is_allowed(serve):
    running = serve(origins=("http://localhost:3000",))
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    foreign = httpx.options(running.url + "/v1/chat/completions",
                            headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in foreign.headers
    assert foreign.status_code == 403
    simple = httpx.get(running.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 403 and "access-control-allow-origin" not in simple.headers

    allowed = httpx.options(running.url + "/v1/chat/completions",
                            headers={"Origin": "http://localhost:3000", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    listing = httpx.get(running.url + "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert listing.status_code == 200
    assert listing.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_the_network_needs_a_key_and_every_route_checks_it(services, serve, small):
    with pytest.raises(ServerError, match="needs an API key"):
        asyncio.run(LocalServer(services, ServerConfig(host="0.0.0.0", port=0)).start())

    running = serve(host="0.0.0.0", api_key="s3cret-key")
    url = f"http://127.0.0.1:{running.server.port}"
    missing = httpx.get(url + "/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    client = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret-key", max_retries=0)
    assert [m.id for m in client.models.list()] == [small.id]


def test_a_port_in_use_is_said_in_a_sentence(services, serve):
    running = serve()
    taken = running.server.port
    with pytest.raises(ServerError, match=f"Port {taken} is in use by another program; choose another port."):
        asyncio.run(LocalServer(services, ServerConfig(port=taken)).start())


def test_errors_are_in_openai_shape(serve, small):
    running = serve()
    missing = httpx.post(running.url + "/v1/nothing", json={})
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    bad = httpx.post(running.url + "/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_a_forced_tool_call_comes_back_as_tool_calls(serve, small):
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"]}}}
    answer = client.chat.completions.create(
        model=small.id, max_tokens=40, tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_a_client_that_leaves_mid_answer_frees_the_model_for_the_next(serve, small):
    running = serve(log_bodies=True)
    with httpx.stream("POST", running.url + "/v1/chat/completions", timeout=120,
                      json={"model": small.id, "max_tokens": 300, "stream": True,
                            "messages": [{"role": "user", "content": "Tell a long story."}]}) as leaving:
        for line in leaving.iter_lines():
            if line.startswith("data:"):
                break
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=60)
    answer = client.chat.completions.create(model=small.id, max_tokens=4,
                                            messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content
    assert running.server.pool.loads == 1
    logged = json.loads(running.records[-1].body)  # the user asked for a log with bodies
    assert logged["prompt"] == [{"role": "user", "content": "Hi"}]
    assert logged["answer"] == answer.choices[0].message.content


def test_a_model_too_big_for_this_computer_is_a_507_with_the_numbers_and_no_engine(services, serve, small, tmp_path):
    total = psutil.virtual_memory().total
    elements = (total * 2) // 4  # F32 weights twice the size of the machine's memory
    big = write_gguf(tmp_path / "huge.gguf", {"general.architecture": "llama"},
                     [("w", [elements], 0)], write_data=False)
    with open(big, "r+b") as fh:  # sparse: costs no disk
        fh.truncate(os.path.getsize(big) + elements * 4)
    services.store.add_model(replace(small, id="huge", name="Huge", path=str(big), file="huge.gguf"))
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="huge", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 507
    assert refused.value.code == "insufficient_memory"
    assert "“Huge” needs about" in refused.value.message and "of memory in all" in refused.value.message
    assert running.server.pool.engine_pids() == []


def test_the_window_and_an_app_on_a_shared_engine_are_answered_in_turn(services, serve, small):
    """The chat window asks the model an app is streaming from: the app's answer is written to
    its end (never cut short in silence), then the window's is answered."""
    running = serve()
    running.call(services.engine.ensure(small, services.settings.load))
    window = services.engine.endpoint()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=120)
    try:
        stream = client.chat.completions.create(
            model=small.id, max_tokens=400, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Write a very long story about a lighthouse."}])
        chunks = iter(stream)
        next(chunks)
        # The user asks the same model something in the chat window meanwhile.
        answered = []
        asked = threading.Thread(target=lambda: answered.append(httpx.post(
            window.base_url + "/chat/completions", timeout=120,
            headers={"Authorization": f"Bearer {window.api_key}"},
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": True})))
        asked.start()
        rest = list(chunks)
        endings = [c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason]
        assert endings in (["stop"], ["length"])  # the app's answer ran to its own end
        assert rest[-1].usage and rest[-1].usage.completion_tokens > 0
        asked.join(120)
        assert answered and answered[0].status_code == 200 and "[DONE]" in answered[0].text  # then the window's
        for _ in range(100):  # the server logs the request as its stream closes
            if running.records:
                break
            running.call(asyncio.sleep(0.05))
        assert [r.status for r in running.records] == [200]
    finally:
        running.call(services.engine.stop())
