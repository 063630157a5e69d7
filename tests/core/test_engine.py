"""The engine child with real llama.cpp: loading, failing clearly, stopping, never outliving the app."""

import asyncio
import os
import shutil
import signal
import time
from dataclasses import replace

import psutil
import pytest

from desktop.core.engine import EngineError, explain_exit
from desktop.core.gguf import GGUFError
from desktop.core.settings import LoadOptions
from tests.gguf_forge import write_gguf

OPTIONS = LoadOptions(n_ctx=1024, n_threads=2)


def run(coro):
    return asyncio.run(coro)


def test_a_model_loads_in_a_child_process_bound_to_loopback_with_a_key(services, model):
    engine = services.engine
    states = []
    engine.on_state = lambda state, detail: states.append(state)

    async def scenario():
        await engine.ensure(model, OPTIONS)
        endpoint = engine.endpoint()
        assert endpoint.base_url.startswith("http://127.0.0.1:")
        root = endpoint.base_url.split("/hearth/")[0]
        import httpx

        key = {"Authorization": f"Bearer {endpoint.api_key}"}
        ask = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
        async with httpx.AsyncClient() as client:
            assert (await client.get(root + "/v1/models")).status_code == 401
            assert (await client.get(root + "/v1/models", headers=key)).status_code == 200
            assert (await client.post(endpoint.base_url + "/chat/completions", json=ask)).status_code == 401
            streamed = await client.post(endpoint.base_url + "/chat/completions", json=ask, headers=key)
        assert streamed.status_code == 200
        assert streamed.text.rstrip().endswith("data: [DONE]")
        child = psutil.Process(engine.pid)
        assert child.ppid() == os.getpid()
        assert endpoint.api_key not in " ".join(child.cmdline())
        assert engine.n_ctx == 1024
        pid = engine.pid
        await engine.stop()
        return pid

    pid = run(scenario())
    assert states == ["loading", "ready", "stopped"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_context_is_capped_at_what_the_model_was_trained_for(services, model):
    plan_ctx = []

    async def scenario():
        await services.engine.ensure(model, LoadOptions(n_ctx=100_000, n_threads=2))
        plan_ctx.append(services.engine.n_ctx)
        await services.engine.stop()

    run(scenario())
    assert plan_ctx == [8192]


def test_a_truncated_model_is_refused_before_any_child_starts(services, model, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(open(model.path, "rb").read(30_000_000))
    with pytest.raises(GGUFError, match="ends early: it is 30.0 MB of 98.4 MB"):
        run(services.engine.ensure(replace(model, path=str(cut)), OPTIONS))
    assert services.engine.pid is None
    assert services.engine.state == "failed"


def test_a_text_file_named_gguf_is_refused_before_any_child_starts(services, model, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    with pytest.raises(GGUFError, match="not a GGUF model file"):
        run(services.engine.ensure(replace(model, path=str(fake)), OPTIONS))
    assert services.engine.pid is None


def test_an_architecture_llama_cpp_does_not_know_is_named_in_the_message(services, model, tmp_path):
    odd = write_gguf(tmp_path / "odd.gguf", {"general.architecture": "hearthnet", "general.name": "Odd"},
                     [("token_embd.weight", [64, 16], 0)])
    with pytest.raises(EngineError) as err:
        run(services.engine.ensure(replace(model, name="Odd", path=str(odd)), OPTIONS))
    message = str(err.value)
    assert "hearthnet" in message and "does not know" in message
    assert "llama-cpp-python 0.3.36" in message
    assert services.engine.state == "failed"
    assert services.engine.pid is None  # refused from the header, before any engine started


def test_when_llama_cpp_itself_refuses_an_architecture_its_words_become_the_sentence():
    log_text = "llama_model_load: error loading model: unknown model architecture: 'grok9'\n"
    message = explain_exit(log_text, 1, "Big")
    assert "“Big” is a grok9 model" in message and "does not know" in message


def test_a_model_larger_than_this_computers_memory_is_refused_up_front(services, model, tmp_path):
    total = psutil.virtual_memory().total
    elements = (total * 2) // 4  # F32 weights twice the size of the machine's memory
    big = write_gguf(tmp_path / "huge.gguf", {"general.architecture": "llama"},
                     [("w", [elements], 0)], write_data=False, size=None)
    with open(big, "r+b") as fh:  # sparse: costs no disk
        fh.truncate(os.path.getsize(big) + elements * 4)
    with pytest.raises(EngineError, match="computer has .* of memory in all"):
        run(services.engine.ensure(replace(model, name="Huge", path=str(big)), OPTIONS))
    assert services.engine.pid is None


def test_switching_models_stops_the_previous_child(services, model, model_file, tmp_path):
    second_path = shutil.copy(model_file, tmp_path / "second.gguf")
    second = replace(model, id="second-model", path=str(second_path))

    async def scenario():
        await services.engine.ensure(model, OPTIONS)
        first_pid = services.engine.pid
        await services.engine.ensure(second, OPTIONS)
        assert services.engine.model.id == second.id
        assert services.engine.pid != first_pid
        gone = not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        await services.engine.stop()
        return gone

    assert run(scenario())


def test_the_child_dies_with_the_app_even_when_the_app_is_killed(model_file, tmp_path):
    """The app is killed outright (SIGKILL): its engine child must not live on."""
    import subprocess
    import sys

    script = f"""
import asyncio, os
os.environ['HEARTH_HOME'] = {str(tmp_path / 'home')!r}
from desktop.core.services import open_services
from desktop.core.settings import LoadOptions
s = open_services()
m = s.library.import_file({str(model_file)!r}, link=True)
async def main():
    await s.engine.ensure(m, LoadOptions(n_ctx=512, n_threads=1))
    print(s.engine.pid, flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""
    app = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(app.stdout.readline())
    assert psutil.pid_exists(child_pid)
    app.send_signal(signal.SIGKILL)
    app.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the engine child outlived the killed app")


def test_the_users_environment_cannot_reconfigure_the_engine(services, model, monkeypatch):
    """llama-cpp-python's server settings read variables such as MODEL or CACHE from the
    environment; a user who happens to have them set must still get a working engine."""
    for name, value in (("MODEL", "/nowhere.gguf"), ("CACHE", "/tmp/somewhere"), ("N_CTX", "lots"),
                        ("PORT", "1"), ("HOST", "0.0.0.0"), ("API_KEY", "guess")):
        monkeypatch.setenv(name, value)

    async def scenario():
        await services.engine.ensure(model, OPTIONS)
        ready = services.engine.state
        serving = services.engine.endpoint().base_url
        await services.engine.stop()
        return ready, serving

    state, url = run(scenario())
    assert state == "ready"
    assert url.startswith("http://127.0.0.1:")


def test_stopping_without_a_loop_says_so_too(services, model):
    asyncio.run(services.engine.ensure(model, OPTIONS))
    pid = services.engine.pid
    services.engine.stop_now()
    assert services.engine.state == "stopped"
    assert not services.engine.is_alive()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_engine_never_sees_the_users_keys_and_tokens(services, model, monkeypatch):
    """A model file is code-adjacent input: the process that runs it gets no cloud key, no hub
    token, no password from the user's environment, and still answers."""
    secrets = {"HF_TOKEN": "hf_secretsecretsecret", "HEARTH_KEY_OPENAI": "sk-hearth-key-in-env",
               "OPENAI_API_KEY": "sk-openai-in-env", "GITHUB_TOKEN": "ghp_tokentokentoken",
               "AWS_SECRET_ACCESS_KEY": "aws-secret-value", "DB_PASSWORD": "hunter2-password",
               "CUDA_SECRET_TOKEN": "cuda-named-secret"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # tuning the user set is still honoured

    async def scenario():
        await services.engine.ensure(model, OPTIONS)
        endpoint = services.engine.endpoint()
        environ = open(f"/proc/{services.engine.pid}/environ", "rb").read().decode(errors="replace")
        import httpx

        async with httpx.AsyncClient() as client:
            answer = await client.post(endpoint.base_url + "/chat/completions", timeout=60,
                                       headers={"Authorization": f"Bearer {endpoint.api_key}"},
                                       json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                                             "stream": True})
        await services.engine.stop()
        return dict(line.split("=", 1) for line in environ.split("\0") if "=" in line), answer

    child_env, answer = run(scenario())
    for name, value in secrets.items():
        assert name not in child_env
        assert value not in " ".join(child_env.values())
    assert child_env["OMP_NUM_THREADS"] == "2"
    assert child_env["HEARTH_HOME"] == os.environ["HEARTH_HOME"]
    assert child_env["PATH"] == os.environ["PATH"]
    assert answer.status_code == 200
    assert '"content"' in answer.text
    assert answer.text.rstrip().endswith("data: [DONE]")


def test_a_killed_engine_is_named_even_when_the_window_noticed_it_first(services, model):
    """The window's timer may mark the dead child before the answer's own check runs (the stream
    ended, so the chat is no longer busy): the answer must still say the engine was killed, not
    only that the connection broke off."""
    engine = services.engine

    async def scenario():
        await engine.ensure(model, services.settings.load)
        os.kill(engine.pid, signal.SIGKILL)
        while engine._proc.poll() is None:
            await asyncio.sleep(0.01)
        noticed = engine.check_alive()  # the window's check, first
        return noticed, await engine.confirm_death()

    noticed, told = asyncio.run(scenario())
    assert noticed and "killed (SIGKILL)" in noticed
    assert told == noticed
    asyncio.run(engine.stop())
