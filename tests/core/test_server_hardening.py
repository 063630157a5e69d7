"""What a careless or hostile client does to Hearth's local server, found by a tester who used
only the README: it leaves before its answer, sends fields of the wrong type, a huge body, a
forged model name for the log, a ttl no clock can hold. The server answers each with one
sentence in the API's shape (never a Python traceback), stops the model's work for a client
that left, and keeps serving the next."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import psutil
import pytest

from tests.core.test_server import serve, small  # noqa: F401 - fixtures

LONG = {"max_tokens": 1500, "temperature": 1.0,
        "messages": [{"role": "user", "content": "Write a very long story about the sea, chapter after chapter."}]}


def _engine_cpu_s(running) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in running.server.pool.engine_pids())


def _idle_after(running, records: int) -> float:
    """Once the server has logged `records` requests, the engine CPU seconds spent in the next
    1.5 s (about 3 s while it writes on two cores; next to nothing when idle)."""
    for _ in range(600):
        if len(running.records) >= records:
            break
        time.sleep(0.05)
    before = _engine_cpu_s(running)
    time.sleep(1.5)
    return _engine_cpu_s(running) - before


def test_a_client_that_gives_up_on_a_whole_answer_stops_the_model(serve, small):  # noqa: F811
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=60)
    client.chat.completions.create(model=small.id, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(httpx.TimeoutException):
        httpx.post(running.url + "/v1/chat/completions", json={"model": small.id, **LONG}, timeout=1.5)
    assert _idle_after(running, 2) < 0.6
    assert running.records[-1].status == 499
    answer = client.chat.completions.create(model=small.id, max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content


def test_a_streaming_client_that_leaves_at_once_stops_the_model(serve, small):  # noqa: F811
    running = serve()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=60)
    client.chat.completions.create(model=small.id, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    host, port = running.url.removeprefix("http://").split(":")
    body = httpx.Request("POST", running.url + "/v1/chat/completions",
                         json={"model": small.id, "stream": True, **LONG})
    with socket.create_connection((host, int(port))) as raw:
        head = "".join(f"{k}: {v}\r\n" for k, v in body.headers.items())
        raw.sendall(f"POST /v1/chat/completions HTTP/1.1\r\n{head}\r\n".encode() + body.read())
        time.sleep(0.05)
    assert _idle_after(running, 2) < 0.6
    answer = client.chat.completions.create(model=small.id, max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content


@pytest.mark.parametrize(("fields", "param"), [
    ('"stop": 5', "stop"), ('"temperature": "hot"', "temperature"), ('"top_k": 2.5', "top_k"),
    ('"logit_bias": {"x": 1}', "logit_bias"), ('"seed": true', "seed"), ('"ttl": NaN', "ttl"),
])
def test_fields_of_the_wrong_type_get_a_sentence_not_a_traceback(serve, small, fields, param):  # noqa: F811
    running = serve()
    for route, words in (("/v1/chat/completions", '"messages": [{"role": "user", "content": "Hi"}]'),
                         ("/v1/completions", '"prompt": "Hi"')):
        raw = httpx.post(running.url + route, timeout=60, headers={"Content-Type": "application/json"},
                         content=f'{{"model": "{small.id}", "max_tokens": 2, {words}, {fields}}}')
        assert raw.status_code == 400, raw.text
        error = raw.json()["error"]
        assert error["param"] == param and "Traceback" not in error["message"] and ".py" not in error["message"]


def test_a_huge_body_is_refused_at_once_and_a_long_prompt_without_counting_it(serve, small):  # noqa: F811
    running = serve()
    huge = httpx.post(running.url + "/v1/chat/completions", timeout=60,
                      json={"model": small.id, "messages": [{"role": "user", "content": "a" * (33 * 2**20)}]})
    assert huge.status_code == 413 and "larger than 32 MB" in huge.json()["error"]["message"]
    long = httpx.post(running.url + "/v1/chat/completions", timeout=60,
                      json={"model": small.id, "messages": [{"role": "user", "content": "word " * 400_000}]})
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    assert "at least" in long.json()["error"]["message"]
    assert running.server.pool.engine_pids()  # the model is still there, and answers
    ok = httpx.post(running.url + "/v1/chat/completions", timeout=60,
                    json={"model": small.id, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert ok.status_code == 200


def test_what_cannot_be_served_is_said(serve, small):  # noqa: F811
    running = serve()
    url = running.url
    nothing = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
    assert nothing.status_code == 400 and nothing.json()["error"]["param"] == "model"
    empty = httpx.post(url + "/v1/chat/completions", json={"model": small.id, "messages": [{"role": "user"}]})
    assert empty.status_code == 400 and "has no content" in empty.json()["error"]["message"]
    fim = httpx.post(url + "/v1/completions", json={"model": small.id, "prompt": "def f(", "suffix": "return 1"})
    assert fim.status_code == 400 and fim.json()["error"]["param"] == "suffix"
    listed = httpx.get(url + "/v1/models").json()["data"][0]
    assert listed["context_length"] == 512  # what the server loads it with (the test's setting), not the file's 8192


def test_a_ttl_no_clock_can_hold_keeps_the_model_and_ollamas_ps_still_answers(serve, small):  # noqa: F811
    running = serve()
    ok = httpx.post(running.url + "/v1/chat/completions", timeout=60,
                    json={"model": small.id, "max_tokens": 2, "ttl": 1e308,
                          "messages": [{"role": "user", "content": "Hi"}]})
    assert ok.status_code == 200
    ps = httpx.get(running.url + "/api/ps")
    assert ps.status_code == 200 and [m["model"] for m in ps.json()["models"]]
    assert running.loaded()[0].idle_until is None  # kept until the server stops, as -1 would


def test_a_model_name_cannot_forge_a_line_of_the_request_log(serve, small):  # noqa: F811
    from desktop.cli import request_line

    running = serve()
    httpx.post(running.url + "/v1/chat/completions", headers={"User-Agent": "evil\x1b]0;pwned\x07"},
               json={"model": "x 404 0 ms\nhearth: 05:31:11 10.0.0.66 POST /v1/chat/completions y 200\x1b[2J",
                     "messages": [{"role": "user", "content": "Hi"}]})
    line = request_line(running.records[-1])
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "404" in line


def test_refused_requests_are_logged_too(serve, small):  # noqa: F811
    running = serve(api_key="k3y-for-the-tests-123")
    httpx.get(running.url + "/v1/models", headers={"Authorization": "Bearer wrong"})
    httpx.get(running.url + "/v1/models", headers={"Host": "evil.example"})
    assert [(r.path, r.status) for r in running.records] == [("/v1/models", 401), ("/v1/models", 403)]


def test_an_answer_streaming_when_the_server_stops_ends_with_a_sentence_not_as_if_whole(serve, small):  # noqa: F811
    import json
    import threading

    running = serve()
    events: list[dict] = []
    with httpx.stream("POST", running.url + "/v1/chat/completions", timeout=120,
                      json={"model": small.id, "stream": True, **LONG}) as answer:
        lines = answer.iter_lines()
        for line in lines:
            if line.startswith("data: {"):
                break  # the answer has begun
        stopping = threading.Thread(target=lambda: running.call(running.server.stop()))
        stopping.start()
        for line in lines:
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
        stopping.join(60)
    assert events and events[-1]["error"]["code"] == "server_stopping"
    assert "not whole" in events[-1]["error"]["message"]
    assert not any(e.get("choices") and e["choices"][0].get("finish_reason") for e in events)
