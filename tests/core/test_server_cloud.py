"""The local server and cloud models: nothing is forwarded unless the user allowed that provider
for the server; then an app's request for `PROVIDER/MODEL` reaches the provider (a stand-in
speaking OpenAI's protocol on this machine's network address, so it counts as another host), the
answer comes back in OpenAI's shape, and the ledger says where the words went and how many bytes."""

from __future__ import annotations

import time

import openai
import pytest

from desktop.core.server import LocalServer, ServerConfig
from tests.cloud_server import ANSWER, CloudServer, network_address

ADDRESS = network_address()


@pytest.fixture
def cloud(services, ring):
    stand_in = CloudServer(host=ADDRESS or "127.0.0.1")
    services.providers.add("acme", base_url=stand_in.url + "/v1", label="Acme AI", key="sk-acme-secret-123")
    services.providers.set_models("acme", ["gpt-4o-mini"])
    yield stand_in
    stand_in.stop()


@pytest.fixture
def serve(server_threads):
    return server_threads


def _client(running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, timeout=30)


def test_nothing_is_forwarded_to_a_provider_the_user_did_not_allow(services, cloud, serve):
    running = serve()
    client = _client(running)
    assert "acme/gpt-4o-mini" not in [m.id for m in client.models.list()]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="acme/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "cloud_not_allowed" and "Nothing was sent" in refused.value.body["message"]
    assert [s for s in cloud.seen if s.path.endswith("/chat/completions")] == []  # not one request left


def test_an_allowed_provider_answers_and_the_ledger_says_where_the_words_went(services, cloud, serve):
    running = serve(cloud=("acme",))
    client = _client(running)
    assert "acme/gpt-4o-mini" in [m.id for m in client.models.list()]
    whole = client.chat.completions.create(model="acme/gpt-4o-mini", max_tokens=20,
                                           messages=[{"role": "user", "content": "Capital of France?"}])
    assert whole.choices[0].message.content == "".join(ANSWER) and whole.model == "acme/gpt-4o-mini"
    sent = cloud.seen[-1]
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["messages"][-1]["content"] == "Capital of France?"
    assert sent.headers["authorization"] == "Bearer sk-acme-secret-123"  # the provider's key, from the keyring

    chunks = list(client.chat.completions.create(model="acme/gpt-4o-mini", stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Again?"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(ANSWER)
    assert chunks[-1].usage is not None

    for _ in range(200):  # a streamed request is logged as its stream closes
        records = [r for r in running.records if r.path == "/v1/chat/completions"]
        if len(records) == 2:
            break
        time.sleep(0.05)
    assert [r.status for r in records] == [200, 200]
    assert all(r.model == "acme/gpt-4o-mini" and r.bytes_sent > 0 for r in records)
    assert all(r.processed_on == (ADDRESS or "this machine") for r in records)
    # The day's ledger row says the words left, where to, and how many bytes.
    rows = [row for row in services.store.api_use() if row.model == "acme/gpt-4o-mini"]
    assert len(rows) == 1 and rows[0].requests == 2 and rows[0].bytes_sent > 0
    assert rows[0].processed_on == (ADDRESS or "this machine")


def test_a_providers_refusal_reaches_the_app_as_a_sentence_without_the_key(services, cloud, serve):
    running = serve(cloud=("acme",))
    client = _client(running)
    cloud.next.append("echo")  # a 400 that repeats the key it was sent
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="acme/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert "sk-acme-secret-123" not in str(failed.value.body)
    cloud.next.append("401")  # the provider refuses the key kept for it: the app hears whose key and why
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="acme/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert failed.value.status_code == 502 and "Acme AI refused the key" in failed.value.body["message"]
    cloud.next.append("429")  # a rate limit with a short Retry-After is waited out, as in the window
    again = client.chat.completions.create(model="acme/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert again.choices[0].message.content == "".join(ANSWER)
    with pytest.raises(openai.BadRequestError) as refused:  # tools are not forwarded: said, nothing sent
        before = len(cloud.seen)
        client.chat.completions.create(model="acme/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    assert refused.value.code == "not_forwarded" and len(cloud.seen) == before


def test_offline_mode_stops_forwarding_even_when_allowed(services, cloud, serve):
    from dataclasses import replace

    services.save_settings(replace(services.settings, offline=True))
    running = serve(cloud=("acme",))
    client = _client(running)
    assert "acme/gpt-4o-mini" not in [m.id for m in client.models.list()]
    with pytest.raises(openai.PermissionDeniedError, match="Offline mode is on"):
        client.chat.completions.create(model="acme/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert not [s for s in cloud.seen if s.path.endswith("/chat/completions")]


def test_the_setting_survives_and_is_off_by_default(services):
    assert services.settings.server.cloud == ()
    assert LocalServer(services, ServerConfig()).config.cloud == ()
