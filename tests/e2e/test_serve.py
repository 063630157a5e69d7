"""`hearth serve` as a person runs it in a terminal: it prints its address, answers real clients,
and Ctrl+C ends it cleanly with no engine left behind."""

import os
import signal
import subprocess
import sys
import time

import openai
import psutil

from tests.e2e.test_cli import hearth


def _start(*args: str, stdin: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "desktop", "serve", "--port", "0", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    if stdin is not None:
        proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def _address(proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("http://"):
            return line.strip()
        if not line and proc.poll() is not None:
            raise AssertionError(f"hearth serve ended: {proc.stderr.read()}")
    raise AssertionError("hearth serve printed no address")


def _engines_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "engine" in " ".join(p.cmdline())]


def test_hearth_serve_answers_an_openai_client_and_ctrl_c_ends_it_cleanly(home, model_file):
    hearth("models", "import", "--link", str(model_file))
    proc = _start("--model", "smollm2-135m-instruct-q4_1", "--ttl", "60")
    try:
        address = _address(proc)
        assert address.startswith("http://127.0.0.1:")
        engines = _engines_of(proc.pid)
        assert len(engines) == 1  # --model loaded it before the address was printed
        client = openai.OpenAI(base_url=address + "/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(model="smollm2-135m-instruct-q4_1", max_tokens=6,
                                                messages=[{"role": "user", "content": "Hello"}])
        assert answer.model == "smollm2-135m-instruct-q4_1" and answer.choices[0].message.content
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "curl " + address + "/v1/chat/completions" in err  # the one-line example
    assert "POST /v1/chat/completions smollm2-135m-instruct-q4_1 200" in err  # the request log
    for engine in engines:
        assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE


def test_hearth_serve_on_the_network_needs_a_key_and_then_checks_it(home, model_file):
    refused = hearth("serve", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("hearth: Serving on the network (0.0.0.0) needs an API key, so that only the "
                                      "apps you give it to can use your models: pass one with --api-key-stdin.")
    proc = _start("--host", "0.0.0.0", "--api-key-stdin", stdin="k3y-for-tests\n")
    try:
        address = _address(proc)
        with_key = openai.OpenAI(base_url=address + "/v1", api_key="k3y-for-tests", max_retries=0)
        assert list(with_key.models.list()) == []
        try:
            openai.OpenAI(base_url=address + "/v1", api_key="wrong", max_retries=0).models.list()
            raise AssertionError("a wrong key was let in")
        except openai.AuthenticationError:
            pass
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err
    assert "k3y-for-tests" not in err  # the key is never printed


def test_hearth_serve_on_a_port_in_use_says_so(home):
    proc = _start()
    try:
        port = _address(proc).rsplit(":", 1)[1]
        taken = hearth("serve", "--port", port)
        assert taken.returncode == 2
        assert taken.stderr.strip() == f"hearth: Port {port} is in use by another program; choose another port."
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_hearth_serve_forwards_to_a_provider_only_when_told_and_says_where(home):
    from tests.cloud_server import ANSWER, CloudServer

    unknown = hearth("serve", "--port", "0", "--allow-cloud", "nope")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "There is no provider called “nope”" in unknown.stderr
    stand_in = CloudServer()
    try:
        hearth("providers", "add", "acme", "--base-url", stand_in.url + "/v1")
        proc = _start("--allow-cloud", "acme")
        try:
            address = _address(proc)
            client = openai.OpenAI(base_url=address + "/v1", api_key="none", max_retries=0)
            answer = client.chat.completions.create(model="acme/gpt-4o-mini", max_tokens=6,
                                                    messages=[{"role": "user", "content": "Hello"}])
            assert answer.choices[0].message.content == "".join(ANSWER)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        stand_in.stop()
    assert proc.returncode == 0 and "Traceback" not in err
    assert "requests for acme/… models are sent to acme (a server on this computer)" in err
    assert "POST /v1/chat/completions acme/gpt-4o-mini 200" in err
