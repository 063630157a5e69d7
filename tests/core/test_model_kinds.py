"""An installed embedding model is known for what it is, and nothing that chats ever picks it: a
new chat, `hearth chat -m`, `hearth compare`, the local server's OpenAI and Ollama chat routes.
The embedding model is a real GGUF (a one-layer BERT forged with the `gguf` package, 51 KB) that
llama.cpp loads; /v1/embeddings still answers with it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import httpx
import openai
import pytest

from desktop.core import model_kinds
from desktop.core.errors import HearthError
from desktop.core.server import ServerConfig
from desktop.core.settings import LoadOptions
from tests.e2e.test_cli import hearth
from tests.gguf_forge import forge_bert, write_gguf
from tests.server_thread import ServerThread


@pytest.fixture
def bert(services, tmp_path):
    """The forged BERT embedding model, installed (linked)."""
    return services.library.import_file(forge_bert(tmp_path / "forged-bert-embedding.gguf"), link=True)


def decoder_embedding(path, pooling: int | None):
    """A llama-architecture file (a decoder, as Qwen3-Embedding or gte-Qwen2 are) that declares
    `llama.pooling_type`, or not (None): enough for the library to read and record it."""
    metadata = {"general.architecture": "llama", "general.name": path.stem, "llama.context_length": 512}
    if pooling is not None:
        metadata["llama.pooling_type"] = pooling
    return write_gguf(path, metadata, [("token_embd.weight", [8, 4], 0)])


def test_the_architectures_named_are_llamacpps_own_and_the_rule_reads_the_file():
    import gguf

    known = set(gguf.MODEL_ARCH_NAMES.values())  # llama.cpp's list, as its gguf package ships it
    assert model_kinds.EMBEDDING_ARCHITECTURES <= known
    for arch in ("bert", "nomic-bert", "jina-bert-v2", "t5encoder", "modern-bert", "gemma-embedding"):
        assert model_kinds.for_embeddings(arch, "")
    for arch in ("llama", "qwen3", "gemma3", "t5", "pangu-embedded"):  # pangu-embedded chats
        assert not model_kinds.for_embeddings(arch, "") and not model_kinds.for_embeddings(arch, None)
    assert model_kinds.for_embeddings("qwen3", "last")  # Qwen3-Embedding
    assert model_kinds.pooling_of({"general.architecture": "qwen3", "qwen3.pooling_type": 3}) == "last"
    assert model_kinds.pooling_of({"general.architecture": "qwen3", "qwen3.pooling_type": 0}) == ""  # none
    assert model_kinds.pooling_of({"general.architecture": "llama"}) == ""
    assert model_kinds.kind_of("nomic-bert", "mean") == "embedding" and model_kinds.kind_of("llama", "") == "chat"


def test_an_installed_embedding_model_is_known_by_its_architecture_or_its_pooling(services, model, bert, tmp_path):
    assert bert.architecture == "bert" and bert.pooling == "mean" and bert.for_embeddings
    assert model.architecture == "llama" and model.pooling == "" and not model.for_embeddings
    qwen_like = services.library.import_file(decoder_embedding(tmp_path / "decoder-embed.gguf", 3), link=True)
    assert qwen_like.pooling == "last" and qwen_like.for_embeddings
    assert {m.id for m in services.library.chat_models()} == {model.id}
    assert {m.id for m in services.library.models()} == {model.id, bert.id, qwen_like.id}
    assert services.store.model(bert.id).for_embeddings  # kept in the database, not guessed again


def test_a_model_installed_before_hearth_kept_the_pooling_has_its_file_read_once(services, model, tmp_path):
    qwen_like = services.library.import_file(decoder_embedding(tmp_path / "decoder-embed.gguf", 1), link=True)
    db = sqlite3.connect(services.store.path)
    db.execute("UPDATE models SET pooling = NULL")  # as schema 7 leaves models installed before it
    db.commit()
    db.close()
    assert services.store.model(qwen_like.id).pooling is None
    assert [m.id for m in services.library.chat_models()] == [model.id]
    assert services.store.model(qwen_like.id).pooling == "mean" and services.store.model(model.id).pooling == ""


def test_a_new_chat_never_picks_an_embedding_model(services, model, bert):
    services.store.touch_model(bert.id)  # the embedding model is the last one used
    assert services.library.models()[0].id == bert.id
    chat = services.chat
    assert chat.model_for(chat.new_conversation()).id == model.id
    services.save_settings(replace(services.settings, last_model=bert.id))
    assert chat.model_for(chat.new_conversation()).id == model.id
    named = chat.new_conversation(bert.id)  # even a chat set to it is answered by a chat model
    assert chat.model_for(named).id == model.id


def test_with_only_an_embedding_model_a_chat_says_to_get_a_chat_model(services, bert):
    with pytest.raises(HearthError, match="Only embedding models are installed, and they cannot chat"):
        services.chat.model_for(services.chat.new_conversation())


def test_hearth_chat_and_compare_refuse_an_embedding_model_in_a_sentence(home, model_file, tmp_path):
    path = forge_bert(tmp_path / "forged-bert-embedding.gguf")
    assert hearth("models", "import", "--link", str(path)).returncode == 0
    hearth("models", "import", "--link", str(model_file))
    for args in (("chat", "-m", "forged-bert-embedding", "Hello?"), ("chat", "-m", str(path), "Hello?"),
                 ("compare", "-m", "smollm2", "-m", "forged-bert-embedding", "Hello?")):
        result = hearth(*args)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith("hearth: “forged-bert-embedding") and "is an embedding model" in result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    listed = {m["id"]: m for m in json.loads(hearth("models", "list", "--json").stdout)}
    assert listed["forged-bert-embedding"]["kind"] == "embedding"
    assert listed["smollm2-135m-instruct-q4_1"]["kind"] == "chat"
    table = hearth("models", "list").stdout.splitlines()
    assert "KIND" in table[0]
    assert any(line.startswith("forged-bert-embedding") and " embedding " in line for line in table)
    assert any(line.startswith("smollm2") and " chat " in line for line in table)
    assert sqlite3.connect(home / "data" / "hearth.db").execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_the_server_refuses_to_chat_with_an_embedding_model_and_still_embeds_with_it(services, bert):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=512, n_threads=2))
    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=bert.id, messages=[{"role": "user", "content": "Hi"}])
        assert refused.value.body["code"] == "model_not_for_chat" and refused.value.body["param"] == "model"
        assert "is an embedding model" in refused.value.body["message"]
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model=bert.id, prompt="Once upon a time")
        assert refused.value.body["code"] == "model_not_for_chat"
        assert running.loaded() == []  # refused before anything was loaded

        http = httpx.Client(base_url=running.url, timeout=60)
        for path, body in (("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]}),
                           ("/api/generate", {"prompt": "Hi"}), ("/api/generate", {})):  # {}: only load it
            answer = http.post(path, json={"model": bert.id, "stream": False, **body})
            assert answer.status_code == 400 and list(answer.json()) == ["error"]
            verb = "chat" if path == "/api/chat" else "generate"
            assert answer.json()["error"].startswith(f'"{bert.id}" does not support {verb}: it is an embedding model')
        assert http.post("/api/show", json={"model": bert.id}).json()["capabilities"] == ["embedding"]
        tags = {t["name"]: t for t in http.get("/api/tags").json()["models"]}
        assert tags[f"{bert.id}:latest"]["details"]["family"] == "bert"

        vectors = client.embeddings.create(model=bert.id, input=["hello world", "the cat sat on the mat"])
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 32
    finally:
        running.close()


def test_ollama_shows_a_chat_model_as_able_to_complete(services, model):
    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    try:
        shown = httpx.post(running.url + "/api/show", json={"model": model.id}, timeout=30).json()
        assert shown["capabilities"] == ["completion"]
    finally:
        running.close()


def test_hearth_serve_model_keeps_an_embedding_model_loaded_for_embeddings(services, bert):
    from desktop.cli import _preload

    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    try:
        running.call(_preload(running.server, bert.id))
        assert running.server.pool.loads == 1
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
        assert len(client.embeddings.create(model=bert.id, input="hello world").data[0].embedding) == 32
        assert running.server.pool.loads == 1  # answered by the engine --model loaded, not a second one
    finally:
        running.close()


def test_hearth_serve_with_an_embedding_model_suggests_the_request_it_answers(home, tmp_path):
    import signal

    from tests.e2e.test_serve import _address, _start

    assert hearth("models", "import", "--link", str(forge_bert(tmp_path / "forged-bert-embedding.gguf"))).returncode == 0
    proc = _start("--model", "forged-bert-embedding")
    try:
        address = _address(proc)
        answer = httpx.post(f"{address}/v1/embeddings", json={"model": "forged-bert-embedding", "input": "Hello"},
                            timeout=60)
        assert answer.status_code == 200 and len(answer.json()["data"][0]["embedding"]) == 32
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"hearth: try: curl {address}/v1/embeddings " in err and "/v1/chat/completions" not in err
    assert '"input": "Hello"' in err and proc.returncode == 0
