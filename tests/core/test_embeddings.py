"""Embeddings through the local API server, asked by clients nobody here wrote: the openai SDK
(`client.embeddings.create`, float and base64) and the `ollama` package (`embed`, `embeddings`),
against a real LocalServer whose engine child runs the real SmolLM2 in llama.cpp's embedding
mode. SmolLM2 is a chat model: its vectors are the last token's (engine_server.embedding_plan),
good enough to show the plumbing, not a search model."""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import httpx
import numpy as np
import openai
import psutil
import pytest

from desktop.core.engine_server import embedding_plan
from desktop.core.server import ServerConfig
from desktop.core.settings import LoadOptions
from tests.gguf_forge import forge_bert
from tests.server_thread import ServerThread

N_CTX = 512
DIM = 576  # SmolLM2-135M's embedding length
SIMILAR = ("The cat sat on the mat.", "A kitten was sitting on the rug.")
UNRELATED = "Quarterly tax filing deadlines for corporations."


@pytest.fixture
def server(services, model):
    """A LocalServer on a free port; the starter model loads with a 512-token context."""
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=N_CTX, n_threads=2))
    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    yield running
    running.close()


def _running(pid: int) -> bool:
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def _unit(vectors) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    assert np.allclose(np.linalg.norm(array, axis=-1), 1.0, atol=1e-4)
    return array


def test_an_openai_sdk_app_gets_one_unit_vector_per_input_in_floats_and_base64(server, model):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed-on-loopback", max_retries=0)
    texts = [*SIMILAR, UNRELATED, SIMILAR[0]]

    got = client.embeddings.create(model=model.id, input=texts)
    assert got.model == model.id
    assert [d.index for d in got.data] == [0, 1, 2, 3]
    vectors = _unit([d.embedding for d in got.data])
    assert vectors.shape == (4, DIM)
    assert np.allclose(vectors[0], vectors[3], atol=1e-6)  # the same text, the same vector
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)  # different texts, different vectors
    # Holds with a wide margin on SmolLM2 (0.96 against 0.83); the numbers are deterministic.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert got.usage.prompt_tokens == got.usage.total_tokens > 4 * 5

    # The SDK asks for base64 when numpy is there and decodes it; the raw answer is that too.
    raw = httpx.post(server.url + "/v1/embeddings", json={"model": model.id, "input": texts[:2],
                                                          "encoding_format": "base64"}, timeout=60).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    assert np.array_equal(decoded, np.asarray(vectors[:2], dtype=np.float32))
    floats = client.embeddings.create(model=model.id, input=texts[0], encoding_format="float")
    assert len(floats.data) == 1 and np.allclose(floats.data[0].embedding, vectors[0], atol=1e-6)

    # Token ids are embedded as given: the text's own tokens give the text's vector.
    from llama_cpp import Llama

    vocab = Llama(str(model.path), vocab_only=True, verbose=False)
    ids = vocab.tokenize(SIMILAR[0].encode(), add_bos=True, special=False)
    by_ids = client.embeddings.create(model=model.id, input=[ids, ids[:3]])
    assert len(by_ids.data) == 2 and np.allclose(by_ids.data[0].embedding, vectors[0], atol=1e-5)
    assert client.embeddings.create(model=model.id, input=ids).usage.prompt_tokens == len(ids)

    # Shorter vectors (Matryoshka style): the first numbers, unit length again.
    short = client.embeddings.create(model=model.id, input=texts[0], dimensions=64).data[0].embedding
    assert len(short) == 64 and np.allclose(short, vectors[0][:64] / np.linalg.norm(vectors[0][:64]), atol=1e-5)

    logged = [r for r in server.records if r.path == "/v1/embeddings"]
    assert len(logged) == 6 and all(r.status == 200 and r.model == model.id and r.tokens_in for r in logged)
    assert all(r.client.startswith("127.0.0.1") for r in logged)
    assert any("OpenAI" in r.client for r in logged)  # the SDK's user agent
    assert server.server.pool.loads == 1


def test_bad_embedding_requests_get_a_clear_openai_error_and_nothing_is_cut(server, model):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=model.id, input=["short", "apple " * 1000])
    assert refused.value.code == "context_length_exceeded"
    message = refused.value.body["message"]
    assert f"maximum context length is {N_CTX} tokens" in message
    assert int(message.split("input 1 is ")[1].split()[0]) > 1000

    for bad, param in (({"input": []}, "input"), ({"input": ""}, "input"), ({"input": [""]}, "input"),
                       ({"input": [1.5]}, "input"), ({"input": "hi", "encoding_format": "hex"}, "encoding_format"),
                       ({"input": "hi", "dimensions": 0}, "dimensions"),
                       ({"input": "hi", "dimensions": DIM + 1}, "dimensions")):
        answer = httpx.post(server.url + "/v1/embeddings", json={"model": model.id, **bad}, timeout=60)
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["param"] == param and answer.json()["error"]["message"]
    assert str(DIM) in answer.json()["error"]["message"]

    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="no-such-model", input="hi")
    assert missing.value.code == "model_not_found"
    statuses = [r.status for r in server.records if r.path == "/v1/embeddings"]
    assert statuses == [400] * 8 + [404]


def test_the_embedding_engine_is_its_own_process_and_leaves_with_the_server(services, model):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=N_CTX, n_threads=2))
    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model=model.id, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
        client.embeddings.create(model=model.id, input="Hi")
        pids = running.server.pool.engine_pids()
        assert len(pids) == 2 and len(set(pids)) == 2  # chat and embedding mode: two children
        loaded = running.loaded()
        assert sorted(m.embedding for m in loaded) == [False, True]
        embedding_pid = next(p for p in pids if "--embedding" in psutil.Process(p).cmdline())
    finally:
        running.close()
    deadline = time.monotonic() + 10
    while _running(embedding_pid):
        assert time.monotonic() < deadline, "the embedding engine outlived the server"
        time.sleep(0.1)


def test_an_ollama_app_embeds_and_ollamas_truncate_is_honoured_and_said(server, model):
    import ollama

    client = ollama.Client(host=server.url)
    got = client.embed(model=model.id, input=[*SIMILAR, UNRELATED])
    vectors = _unit(got.embeddings)
    assert vectors.shape == (3, DIM)
    assert got.prompt_eval_count > 10 and got.total_duration >= got.load_duration > 0
    assert got.model == model.id
    one = client.embed(model=f"{model.id}:latest", input=SIMILAR[0])
    assert np.allclose(one.embeddings[0], vectors[0], atol=1e-6)
    old = client.embeddings(model=model.id, prompt=SIMILAR[0])
    assert np.allclose(old.embedding, vectors[0], atol=1e-6)

    long = "apple " * 1000
    # Ollama's default (truncate true) cuts to the context, and Hearth says so in a header.
    cut = httpx.post(server.url + "/api/embed", json={"model": model.id, "input": long}, timeout=60)
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == N_CTX
    assert cut.headers["x-hearth-input-truncated"] == f"0: -> {N_CTX}"
    with pytest.raises(ollama.ResponseError) as refused:
        client.embed(model=model.id, input=long, truncate=False)
    assert refused.value.status_code == 400 and str(N_CTX) in refused.value.error
    with pytest.raises(ollama.ResponseError) as old_refused:
        client.embeddings(model=model.id, prompt=long)
    assert old_refused.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as missing:
        client.embed(model="no-such-model", input="hi")
    assert missing.value.status_code == 404 and "hearth models list" in missing.value.error

    # No input: the model is loaded and nothing embedded; keep_alive 0 unloads it after.
    [child] = server.server.pool.engine_pids()
    assert client.embed(model=model.id, input=[], keep_alive=0).embeddings == []
    deadline = time.monotonic() + 10
    while (server.loaded() or _running(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.loaded() == [] and not _running(child)

    logged = [r for r in server.records if r.path.startswith("/api/embed")]
    assert [r.status for r in logged] == [200, 200, 200, 200, 400, 400, 404, 200]
    assert all(r.model == model.id for r in logged if r.status != 404)
    assert logged[0].tokens_in == got.prompt_eval_count and "ollama" in logged[0].client.lower()


def test_the_pooling_comes_from_the_model_file_or_is_the_last_token_of_a_chat_model():
    nomic = {"general.architecture": "nomic-bert", "nomic-bert.pooling_type": 1, "nomic-bert.attention.causal": False}
    assert embedding_plan(nomic, 2048) == {"pooling": "mean", "by": "model", "n_batch": 2048, "n_ubatch": 2048,
                                           "n_ctx": 2048}
    qwen_embedding = {"general.architecture": "qwen3", "qwen3.pooling_type": 3}
    assert embedding_plan(qwen_embedding, 4096)["pooling"] == "last"
    assert embedding_plan(qwen_embedding, 4096)["n_ubatch"] == 4096  # whole input in one step
    chat = {"general.architecture": "llama"}
    assert embedding_plan(chat, 4096) == {"pooling": "last", "by": "hearth", "n_batch": 512, "n_ubatch": 512,
                                          "n_ctx": 4096}
    bert_without_pooling = {"general.architecture": "bert"}
    assert embedding_plan(bert_without_pooling, 512)["pooling"] == "mean"


def test_an_embedding_model_pools_as_its_file_says_and_reads_a_whole_input_at_once(services, tmp_path):
    """A BERT-like model (non-causal, mean pooling in its GGUF), forged: llama.cpp pools, each
    input is read in one batch of the whole context, and the server's answer is llama-cpp-python's
    own mean-pooled vector, normalised."""
    from llama_cpp import Llama

    path = forge_bert(tmp_path / "forged-bert-embedding.gguf")
    bert = services.library.import_file(path, link=True)
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=512, n_threads=2))  # capped at 64
    running = ServerThread(services, ServerConfig(port=0, ttl_s=600)).start()
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
        texts = ["hello world", "the cat sat on the mat", "hello world", "kitten on the rug " * 10]
        got = client.embeddings.create(model=bert.id, input=texts)
        vectors = _unit([d.embedding for d in got.data])
        assert vectors.shape == (4, 32)
        assert np.allclose(vectors[0], vectors[2], atol=1e-6) and not np.allclose(vectors[0], vectors[1], atol=1e-3)
        reference = Llama(str(path), embedding=True, n_ctx=64, n_batch=64, n_ubatch=64, verbose=False)
        expected = reference.embed(texts, normalize=True)
        assert np.allclose(vectors, expected, atol=1e-5)
        assert got.usage.prompt_tokens == sum(len(reference.tokenize(t.encode())) for t in texts)

        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model=bert.id, input="hello " * 100)
        assert "maximum context length is 64 tokens" in refused.value.body["message"]
        assert "is 102 tokens" in refused.value.body["message"]  # 100 words, [CLS] and [SEP]
    finally:
        running.close()


def test_embedding_requests_arriving_together_are_all_answered_by_one_engine_load(server, model):
    from concurrent.futures import ThreadPoolExecutor

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    texts = [f"Note {i}: {SIMILAR[i % 2]}" for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda t: client.embeddings.create(model=model.id, input=t), texts))
    vectors = _unit([a.data[0].embedding for a in answers])
    alone = _unit([d.embedding for d in client.embeddings.create(model=model.id, input=texts).data])
    assert np.allclose(vectors, alone, atol=1e-5)  # the same vectors asked together or one by one
    assert server.server.pool.loads == 1 and len(server.server.pool.engine_pids()) == 1
