"""Ollama's API on Hearth's local server: tools that speak only Ollama use the models Hearth keeps.

The translation (names, options, keep_alive, answers in Ollama's shapes) is checked on its own,
and the routes end to end with Ollama's own Python client (`ollama`, a test extra) against a real
LocalServer and the real SmolLM2 starter model in llama.cpp.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest

from desktop.core.server import ServerConfig
from desktop.core.server.ollama import (
    OllamaError,
    Timing,
    chat_line,
    chat_messages,
    find_model,
    keep_alive_s,
    ndjson,
    read_chunk,
    response_format,
    sampling_fields,
    stock_url,
    upstream_error,
)
from desktop.core.settings import LoadOptions, Sampling
from tests.gguf_forge import write_gguf
from tests.server_thread import ServerThread

ID = "smollm2-135m-instruct-q4_1"


# --- the translation -----------------------------------------------------------------------------

def test_keep_alive_is_read_as_ollama_writes_it():
    assert keep_alive_s(None) is None  # the server's idle time
    assert keep_alive_s(0) == 0 and keep_alive_s("0") == 0  # unload after this request
    assert keep_alive_s("5m") == 300 and keep_alive_s("1h30m") == 5400 and keep_alive_s("300ms") == 0.3
    assert keep_alive_s(90) == 90 and keep_alive_s("90") == 90 and keep_alive_s(2.5) == 2.5
    assert keep_alive_s(-1) == -1 and keep_alive_s("-1m") == -1  # kept loaded
    for bad in ("soon", "5 minutes", "5x", True, [5]):
        with pytest.raises(OllamaError) as refused:
            keep_alive_s(bad)
        assert refused.value.status == 400 and "keep_alive" in str(refused.value)


def test_ollama_options_become_the_engines_sampling_fields():
    defaults = Sampling(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, seed=-1)
    body = sampling_fields({"temperature": 0, "top_p": 0.5, "top_k": 7, "num_predict": 12, "seed": 42,
                            "stop": ["\n\n", "User:"], "num_ctx": 2048}, defaults)
    assert body == {"temperature": 0.0, "top_p": 0.5, "top_k": 7, "min_p": 0.05, "repeat_penalty": 1.1,
                    "max_tokens": 12, "seed": 42, "stop": ["\n\n", "User:"]}
    plain = sampling_fields(None, defaults)  # Hearth's defaults; the answer runs to its end, as in Ollama
    assert plain["temperature"] == 0.7 and "max_tokens" not in plain and "seed" not in plain
    assert "max_tokens" not in sampling_fields({"num_predict": -1}, defaults)
    assert "max_tokens" not in sampling_fields({"num_predict": -2}, defaults)
    assert sampling_fields({"stop": "END"}, defaults)["stop"] == ["END"]
    assert sampling_fields(None, replace(defaults, seed=7))["seed"] == 7
    for bad in ({"temperature": "hot"}, {"num_predict": "many"}, {"stop": [1]}, ["temperature"]):
        with pytest.raises(OllamaError) as refused:
            sampling_fields(bad, defaults)
        assert refused.value.status == 400


def test_format_json_or_a_schema_constrains_the_answer():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    assert response_format(None) is None and response_format("") is None
    assert response_format("json") == {"type": "json_object"}
    assert response_format(schema) == {"type": "json_object", "schema": schema}
    with pytest.raises(OllamaError) as refused:
        response_format("yaml")
    assert refused.value.status == 400 and "format" in str(refused.value)


def test_chat_messages_are_text_and_images_are_refused_in_a_sentence():
    assert chat_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    for bad, words in (([{"role": "wizard", "content": "x"}], "role"), ("hi", "list"),
                       ([{"role": "user", "content": "x", "images": ["aGk="]}], "images")):
        with pytest.raises(OllamaError) as refused:
            chat_messages(bad)
        assert refused.value.status == 400 and words in str(refused.value)


def test_openai_chunks_become_ollama_lines_with_figures_in_nanoseconds():
    piece = read_chunk({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]})
    assert (piece.text, piece.finish) == ("Hel", None)
    assert read_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}).finish == "length"
    assert read_chunk({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}).usage[
        "prompt_tokens"] == 9
    assert read_chunk({"choices": [{"text": " world", "finish_reason": None}]}).text == " world"  # completions
    whole = read_chunk({"choices": [{"message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}]})
    assert (whole.text, whole.finish) == ("{}", "stop")
    line = json.loads(ndjson(chat_line("smollm2:135m", "Hel")))
    assert line["message"] == {"role": "assistant", "content": "Hel"} and line["done"] is False
    assert line["model"] == "smollm2:135m" and line["created_at"].endswith("Z")
    timing = Timing(started=0, loaded=1_000, first=5_000, ended=20_000, prompt_tokens=9, answer_tokens=3)
    assert timing.done_fields("stop") == {
        "done": True, "done_reason": "stop", "total_duration": 20_000, "load_duration": 1_000,
        "prompt_eval_count": 9, "prompt_eval_duration": 4_000, "eval_count": 3, "eval_duration": 15_000}


def test_an_engine_error_becomes_a_sentence_and_a_long_prompt_a_400():
    too_long = upstream_error(500, "Requested tokens (5000) exceed context window of 4096")
    assert too_long.status == 400 and "5000" in str(too_long) and "4096" in str(too_long)
    with pytest.raises(OllamaError) as event:
        read_chunk({"error": {"message": "llama_decode returned -3"}})
    assert event.value.status == 500 and "llama_decode returned -3" in str(event.value)
    assert stock_url("http://127.0.0.1:5000/v1", "/hearth/v1/chat/completions") == \
        "http://127.0.0.1:5000/hearth/v1/chat/completions"
    assert stock_url("http://127.0.0.1:5000/hearth/v1", "/v1/completions") == "http://127.0.0.1:5000/v1/completions"


def test_ollama_names_find_a_hearth_model_or_say_which_command_lists_them(services, model, tmp_path):
    library = services.library
    for name in (ID, f"{ID}:latest", "smollm2:135m", "SmolLM2:135M-Instruct-Q4_1", "smollm2:q4_1"):
        assert find_model(library.models(), library.get, name).id == ID, name
    base = write_gguf(tmp_path / "SmolLM2-135M-Base.gguf", {"general.architecture": "llama"})
    other = library.import_file(base)
    assert find_model(library.models(), library.get, "smollm2:135m-instruct").id == ID
    assert find_model(library.models(), library.get, "smollm2:base").id == other.id
    with pytest.raises(OllamaError) as several:
        find_model(library.models(), library.get, "smollm2:135m")
    assert several.value.status == 400 and ID in str(several.value) and other.id in str(several.value)
    with pytest.raises(OllamaError) as unknown:
        find_model(library.models(), library.get, "llama3.2:3b")
    assert unknown.value.status == 404
    assert "not found" in str(unknown.value) and "hearth models list" in str(unknown.value)


# --- end to end: Ollama's own client, a real server, a real model --------------------------------

@pytest.fixture
def server(services, model):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=2))
    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    yield running
    running.close()


@pytest.mark.slow
def test_an_ollama_only_app_lists_shows_and_chats_with_hearths_model(server, model):
    import ollama

    client = ollama.Client(host=server.server.address)
    address = server.server.address
    assert httpx.get(address + "/api/version").json()["version"]
    assert httpx.head(address + "/").status_code == 200  # `ollama list` checks this first
    assert httpx.get(address + "/").text.startswith("Ollama is running")
    pulled = httpx.post(address + "/api/pull", json={"model": "llama3.2"})
    assert pulled.status_code == 501 and "hearth models pull" in pulled.json()["error"]

    listed = client.list().models
    assert [m.model for m in listed] == [f"{ID}:latest"]
    entry = listed[0]
    assert entry.size == model.size and entry.digest == model.sha256 and entry.modified_at is not None
    assert (entry.details.format, entry.details.family) == ("gguf", "llama")
    assert (entry.details.parameter_size, entry.details.quantization_level) == ("135M", "Q4_1")

    shown = client.show("smollm2:135m")
    assert shown.modelinfo["llama.context_length"] == model.context_length == 8192
    assert "im_start" in shown.template and "temperature" in shown.parameters
    assert "num_ctx 2048" in shown.parameters.splitlines()  # the context it is loaded with here
    assert shown.details.family == "llama" and "completion" in shown.capabilities

    ask = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    parts = list(client.chat(model=ID, messages=ask, stream=True, options={"temperature": 0, "num_predict": 24}))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    text = "".join(p.message.content for p in parts)
    assert text.strip() and parts[-1].message.content == ""
    last = parts[-1]
    assert last.done_reason in ("stop", "length") and 0 < last.eval_count <= 24
    assert last.prompt_eval_count > 10  # the chat template's tokens and the question
    assert last.total_duration >= last.load_duration + last.eval_duration > 0

    whole = client.chat(model=f"{ID}:latest", messages=ask, stream=False, options={"temperature": 0, "num_predict": 24})
    assert whole.done and whole.message.role == "assistant" and whole.message.content == text
    assert whole.eval_count == last.eval_count and whole.prompt_eval_count == last.prompt_eval_count

    cut = client.generate(model=ID, prompt="Count from one to fifty in words.", options={"num_predict": 5, "seed": 1})
    assert cut.done_reason == "length" and cut.eval_count == 5 and cut.response.strip()

    raw = client.generate(model=ID, prompt="The capital of France is", raw=True,
                          options={"num_predict": 6, "temperature": 0})
    assert raw.response and raw.eval_count == 6 and raw.prompt_eval_count >= 5

    asked = client.chat(model=ID, format="json", stream=False, options={"temperature": 0, "num_predict": 60},
                        messages=[{"role": "user", "content": "Give a JSON object with a key 'city' for Paris."}])
    assert isinstance(json.loads(asked.message.content), dict)
    lines = list(client.chat(model=ID, format="json", stream=True, options={"temperature": 0, "num_predict": 60},
                             messages=[{"role": "user", "content": "Give a JSON object with a key 'city' for Paris."}]))
    assert lines[-1].done and lines[-1].eval_count > 0
    assert "".join(line.message.content for line in lines) == asked.message.content
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    typed = client.chat(model=ID, format=schema, stream=False, options={"num_predict": 40},
                        messages=[{"role": "user", "content": "What is 2 + 2?"}])
    assert isinstance(json.loads(typed.message.content)["answer"], int)

    with pytest.raises(ollama.ResponseError) as unknown:
        client.chat(model="llama3.2:3b", messages=ask)
    assert unknown.value.status_code == 404 and "hearth models list" in unknown.value.error

    running = client.ps().models
    assert [m.model for m in running] == [f"{ID}:latest"] and running[0].context_length == 2048
    chats = [r for r in server.records if r.path == "/api/chat" and r.status == 200]
    assert chats and chats[0].model == ID and chats[0].tokens_out == last.eval_count
    assert chats[0].tokens_in == last.prompt_eval_count and chats[0].body == ""  # no prompt kept unless asked
    assert any(r.status == 404 and r.path == "/api/chat" for r in server.records)


@pytest.mark.slow
def test_keep_alive_loads_and_unloads_a_model_as_ollama_does(server):
    import ollama

    client = ollama.Client(host=server.server.address)
    loaded = client.generate(model="smollm2:135m", prompt="", keep_alive="10m")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    assert [m.id for m in server.loaded()] == [ID]
    expires = client.ps().models[0].expires_at.timestamp()
    assert 500 < expires - time.time() <= 600

    answered = client.chat(model=ID, messages=[{"role": "user", "content": "Hi"}], keep_alive=0,
                           options={"num_predict": 4})
    assert answered.done
    deadline = time.monotonic() + 10
    while server.loaded() and time.monotonic() < deadline:  # unloaded right after the answer
        time.sleep(0.1)
    assert server.loaded() == [] and client.ps().models == []

    client.generate(model=ID, prompt="", keep_alive=-1)
    assert [m.id for m in server.loaded()] == [ID]
    gone = client.chat(model=ID, messages=[], keep_alive=0)
    assert gone.done_reason == "unload"
    deadline = time.monotonic() + 10
    while server.loaded() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.loaded() == []


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_refused_with_both_numbers_not_cut(server):
    import ollama

    client = ollama.Client(host=server.server.address)
    long = "the quick brown fox jumps over the lazy dog " * 400  # ~4000 tokens, context 2048
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as refused:
            answer = client.chat(model=ID, messages=[{"role": "user", "content": long}], stream=stream)
            if stream:
                list(answer)
        assert refused.value.status_code == 400, refused.value
        assert "2048" in refused.value.error


@pytest.mark.slow
def test_an_app_that_leaves_mid_answer_frees_the_model_for_the_next_request(server):
    address = server.server.address
    story = {"model": ID, "messages": [{"role": "user", "content": "Count from 1 to 5000, one number a line."}],
             "options": {"num_predict": 2000, "temperature": 0}}
    with httpx.stream("POST", address + "/api/chat", json=story, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert first["done"] is False and first["message"]["content"]
    deadline = time.monotonic() + 20
    while not any(r.path == "/api/chat" for r in server.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [r for r in server.records if r.path == "/api/chat"]
    assert left and left[0].model == ID  # recorded, though the app left
    assert [m.busy for m in server.loaded()] == [0]  # the model's turn was handed back
    with pytest.raises(httpx.ReadTimeout):  # an app that gives up waiting for a whole answer
        # (gives up after 50 ms: before even a short answer is written whole, whatever the model says)
        httpx.post(address + "/api/chat", json={**story, "stream": False}, timeout=0.05)
    deadline = time.monotonic() + 20
    while len([r for r in server.records if r.path == "/api/chat"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    gave_up = [r for r in server.records if r.path == "/api/chat"][-1]
    assert gave_up.status == 499 and gave_up.tokens_out is None  # stopped, not written to the end
    assert [m.busy for m in server.loaded()] == [0]
    quick = httpx.post(address + "/api/generate", json={"model": ID, "prompt": "Hi", "stream": False,
                                                       "options": {"num_predict": 3}}, timeout=60)
    assert quick.status_code == 200 and quick.json()["eval_count"] == 3


def test_a_server_with_a_key_lets_an_ollama_client_in_only_with_it(services, model):
    import ollama

    running = ServerThread(services, ServerConfig(port=0, ttl_s=600, api_key="sesame-123", log_bodies=True)).start()
    try:
        address = running.server.address
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=address).list()
        assert refused.value.status_code == 401 and "key" in refused.value.error
        keyed = ollama.Client(host=address, headers={"Authorization": "Bearer sesame-123"})
        assert [m.model for m in keyed.list().models] == [f"{ID}:latest"]
        said = keyed.generate(model=ID, prompt="Say hi to Ada.", options={"num_predict": 3})
        logged = [r for r in running.records if r.path == "/api/generate"]
        assert logged[-1].body.startswith("Say hi to Ada.") and logged[-1].body.endswith(said.response)
    finally:
        running.close()


def test_a_hub_model_is_found_by_the_name_ollama_gives_it(services, tmp_path):
    library = services.library
    repo = "bartowski/SmolLM2-135M-Instruct-GGUF"
    for quant, file_type in (("Q4_K_M", 15), ("Q8_0", 7)):
        path = write_gguf(tmp_path / f"SmolLM2-135M-Instruct-{quant}.gguf",
                          {"general.architecture": "llama", "general.file_type": file_type})
        library.add_downloaded(path, repo=repo, file=path.name, revision="main", sha256="0" * 64,
                               size=path.stat().st_size)
    models = library.models()
    found = find_model(models, library.get, f"hf.co/{repo}:Q4_K_M")
    assert found.file == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert find_model(models, library.get, f"huggingface.co/{repo.lower()}:q8_0").file.endswith("Q8_0.gguf")
    with pytest.raises(OllamaError) as several:
        find_model(models, library.get, f"hf.co/{repo}")
    assert several.value.status == 400 and "quantization" in str(several.value)
    with pytest.raises(OllamaError) as missing:
        find_model(models, library.get, f"hf.co/{repo}:Q2_K")
    assert missing.value.status == 404 and "hearth models list" in str(missing.value)
    assert f"hearth models pull {repo}:Q2_K" in str(missing.value)
