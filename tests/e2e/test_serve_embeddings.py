"""Embeddings from `hearth serve` as the README shows them: the curl request (raw HTTP, as curl
sends it) answers one unit vector per input, and Ctrl+C ends the server with its embedding
engine gone too."""

import math
import signal

import httpx
import psutil

from tests.e2e.test_cli import hearth
from tests.e2e.test_serve import _address, _engines_of, _start

MODEL = "smollm2-135m-instruct-q4_1"
CURL_BODY = ('{"model": "smollm2-135m-instruct-q4_1", "input": ["Hearth keeps your chats on your disk.", '
             '"Embeddings turn text into numbers."]}')  # the README's curl -d, as it sends it


def test_hearth_serve_answers_the_readmes_curl_embeddings_request_and_leaves_no_engine(home, model_file):
    hearth("models", "import", "--link", str(model_file))
    proc = _start("--ttl", "60")
    try:
        address = _address(proc)
        answer = httpx.post(f"{address}/v1/embeddings", timeout=120, headers={"Content-Type": "application/json"},
                            content=CURL_BODY)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == MODEL and [d["index"] for d in body["data"]] == [0, 1]
        for item in body["data"]:
            assert math.isclose(math.fsum(x * x for x in item["embedding"]), 1.0, rel_tol=1e-4)
        assert body["usage"]["prompt_tokens"] > 0
        [engine] = _engines_of(proc.pid)
        assert "--embedding" in engine.cmdline()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not psutil.pid_exists(engine.pid) or engine.status() == psutil.STATUS_ZOMBIE
