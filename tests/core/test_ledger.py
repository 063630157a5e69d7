"""The data ledger's "used by apps on this computer": real apps (the openai SDK with their own
User-Agent) call a real LocalServer on the SmolLM2 starter, and what they used is in the real
SQLite store, per day and app; prompts are kept only when the user asks; a database another
program holds locked never fails a request and loses nothing; an old database opens."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from dataclasses import replace

import httpx
import openai
import pytest

from desktop.core.paths import app_paths
from desktop.core.settings import LoadOptions
from desktop.core.store import MIGRATIONS, THIS_MACHINE, Store
from tests.db_lock import hold_lock
from tests.e2e.test_cli import hearth
from tests.e2e.test_serve import _address, _start
from tests.server_thread import ServerThread


@pytest.fixture
def serve(services, model, server_threads):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=512, n_threads=2))
    return server_threads


def app(running: ServerThread, agent: str) -> openai.OpenAI:
    """An app on this computer that names itself with its User-Agent, as editors and tools do."""
    return openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0,
                         default_headers={"User-Agent": agent})


def ask(client: openai.OpenAI, model_id: str, text: str = "Say hello.", **extra):
    return client.chat.completions.create(model=model_id, max_tokens=6, temperature=0,
                                          messages=[{"role": "user", "content": text}], **extra)


def today() -> str:
    return time.strftime("%Y-%m-%d")


def test_an_app_is_in_the_ledger_per_day_with_its_tokens_and_two_requests_make_one_row(serve, services, model):
    running = serve()
    notes = app(running, "NoteTaker/2.1 (test)")
    first, second = ask(notes, model.id), ask(notes, model.id, "Name a colour.")
    stream = notes.chat.completions.create(model=model.id, max_tokens=6, stream=True,
                                           stream_options={"include_usage": True},
                                           messages=[{"role": "user", "content": "Count to three."}])
    streamed = [c for c in stream if c.usage][-1].usage
    ask(app(running, "ScriptBot/0.1"), model.id)

    rows = services.store.api_use()
    assert [(r.user_agent, r.requests) for r in rows] == [("ScriptBot/0.1", 1), ("NoteTaker/2.1 (test)", 3)]
    notes_row = rows[1]
    assert (notes_row.day, notes_row.address, notes_row.model, notes_row.processed_on) == (
        today(), "127.0.0.1", model.id, THIS_MACHINE)
    assert notes_row.tokens_in == (first.usage.prompt_tokens + second.usage.prompt_tokens + streamed.prompt_tokens)
    assert notes_row.tokens_out == (first.usage.completion_tokens + second.usage.completion_tokens
                                    + streamed.completion_tokens)
    assert notes_row.failed == 0 and notes_row.bytes_sent == 0

    with pytest.raises(openai.NotFoundError):  # a failed request is counted as one, for its app
        ask(notes, "no-such-model")
    totals = services.store.api_use_totals(since=today()[:8] + "01")
    assert (totals.apps, totals.requests, totals.failed, totals.hosts) == (2, 5, 1, ())
    assert services.store.count_api_requests() == 0  # the user did not ask for prompts to be kept


def test_prompts_and_answers_are_kept_only_while_the_user_asks_and_can_be_deleted(serve, services, model):
    ask(app(serve(), "Plain/1"), model.id, "Secret plan number one.")
    assert services.store.count_api_requests() == 0
    assert "Secret plan" not in _database_text(services)

    services.save_settings(replace(services.settings,
                                   server=replace(services.settings.server, log_bodies=True)))
    running = serve(log_bodies=True)
    answer = ask(app(running, "Logged/1"), model.id, "Secret plan number two.")
    [kept] = services.store.api_requests()
    assert (kept.user_agent, kept.model, kept.status, kept.path) == ("Logged/1", model.id, 200,
                                                                      "/v1/chat/completions")
    body = json.loads(kept.body)
    assert body["prompt"] == [{"role": "user", "content": "Secret plan number two."}]
    assert body["answer"] == answer.choices[0].message.content

    # Turned off while the server runs: no new prompt is kept from then on (those kept stay).
    services.save_settings(replace(services.settings,
                                   server=replace(services.settings.server, log_bodies=False)))
    ask(app(running, "Logged/1"), model.id, "Secret plan number three.")
    assert [k.id for k in services.store.api_requests()] == [kept.id]

    assert services.store.clear_api_requests() == 1
    assert services.store.api_requests() == []
    assert "Secret plan" not in _database_text(services)  # overwritten in the file, not only unlinked
    assert sum(r.requests for r in services.store.api_use()) == 3  # the figures stay


def _database_text(services) -> str:
    folder = services.paths.database.parent
    return b"".join(p.read_bytes() for p in folder.glob(services.paths.database.name + "*")).decode("latin-1")


def test_a_locked_database_fails_no_request_and_every_count_arrives_when_it_is_free(serve, services, model):
    chat = services.store.create_conversation("Kept chat")
    services.store.add_message(chat.id, "user", "a message from before")
    running = serve()
    notes = app(running, "NoteTaker/2.1")
    holder = hold_lock(services.paths.database)
    try:
        answers = [ask(notes, model.id), ask(notes, model.id, "Name a fruit."), ask(app(running, "Other/1"), model.id)]
        assert all(a.choices[0].message.content for a in answers)  # answered, no error
        assert [r.status for r in running.records] == [200, 200, 200]
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
    deadline = time.monotonic() + 30
    while sum(r.requests for r in services.store.api_use()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = {r.user_agent: r for r in services.store.api_use()}
    assert (rows["NoteTaker/2.1"].requests, rows["Other/1"].requests) == (2, 1)
    assert rows["NoteTaker/2.1"].tokens_out == sum(a.usage.completion_tokens for a in answers[:2])
    assert [m.content for m in services.store.messages(chat.id)] == ["a message from before"]


def test_a_lock_let_go_while_the_server_stops_loses_no_count(serve, services, model):
    running = serve()
    holder = hold_lock(services.paths.database)
    ask(app(running, "Late/1"), model.id)

    def let_go() -> None:
        holder.stdin.write("\n")
        holder.stdin.flush()

    threading.Timer(0.5, let_go).start()  # while the server is stopping (it tries for CLOSE_WAIT_S)
    running.close()
    assert holder.wait(timeout=10) == 0
    assert [(r.user_agent, r.requests) for r in services.store.api_use()] == [("Late/1", 1)]


def test_hearth_serve_keeps_the_ledger_in_the_same_database(home, model_file):
    hearth("models", "import", "--link", str(model_file))
    proc = _start("--ttl", "60")
    try:
        address = _address(proc)
        client = openai.OpenAI(base_url=address + "/v1", api_key="none", max_retries=0,
                               default_headers={"User-Agent": "Terminal-App/3"})
        answer = client.chat.completions.create(model="smollm2-135m-instruct-q4_1", max_tokens=6,
                                                messages=[{"role": "user", "content": "Hello"}])
        httpx.post(address + "/api/chat", headers={"User-Agent": "ollama-python/0.4"}, timeout=120,
                   json={"model": "smollm2-135m-instruct-q4_1", "stream": False, "options": {"num_predict": 4},
                         "messages": [{"role": "user", "content": "Hi"}]}).raise_for_status()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    store = Store(app_paths().database)  # the window's database (HEARTH_HOME)
    rows = {r.user_agent: r for r in store.api_use()}
    assert rows["Terminal-App/3"].requests == 1
    assert rows["Terminal-App/3"].tokens_out == answer.usage.completion_tokens
    assert rows["ollama-python/0.4"].requests == 1 and rows["ollama-python/0.4"].tokens_out > 0
    store.close()


def test_a_database_made_by_the_last_release_opens_with_everything_kept(tmp_path):
    path = tmp_path / "hearth.db"
    old = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:5], start=1):  # the schema the last release wrote
        old.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
    old.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('Trip plans', 1, 2)")
    old.execute("INSERT INTO messages (conversation_id, role, content, provider, processed_on, created_at,"
                " updated_at) VALUES (1, 'assistant', 'Pack light.', 'local', 'this machine', 1, 2)")
    old.close()

    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    assert [c.title for c in store.conversations()] == ["Trip plans"]
    assert [m.content for m in store.messages(1)] == ["Pack light."]
    assert store.api_use() == [] and store.api_use_totals().requests == 0
    store.close()
