"""Cloud providers through the chat service, against the cloud stand-in on a real socket:
answers with where they went, tokens, cost and bytes sent; every error a person can act on;
offline mode; keys that never reach a file or a log."""

import asyncio
import logging

import pytest

from desktop.core import cloud, net, secrets
from desktop.core.cloud import ProviderSetupError
from tests.cloud_server import ANSWER, CloudServer, network_address

KEY = "sk-test-NEVER-WRITE-ME-4711"
ADDRESS = network_address()
needs_network_address = pytest.mark.skipif(ADDRESS is None, reason="this machine has no network address")


@pytest.fixture
def server():
    s = CloudServer(host=ADDRESS or "127.0.0.1")
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def online():
    net.set_offline(False)
    yield
    net.set_offline(False)


@pytest.fixture
def openai_chat(services, server, monkeypatch):
    monkeypatch.setenv(secrets.env_name("openai"), KEY)
    services.providers.add("openai", base_url=server.url + "/v1")
    return services.store.create_conversation(title="t", system_prompt="Be brief.", model="openai/gpt-4o-mini")


def ask(services, conversation, text="What is the capital of France?"):
    return asyncio.run(services.chat.send(conversation.id, text))


@needs_network_address
def test_a_cloud_answer_says_where_it_went_what_it_cost_and_how_much_was_sent(services, server, openai_chat):
    answer = ask(services, openai_chat)
    assert (answer.status, answer.content) == ("complete", "".join(ANSWER))
    assert (answer.provider, answer.model, answer.processed_on) == ("openai", "gpt-4o-mini", ADDRESS)
    assert (answer.tokens_in, answer.tokens_out, answer.usage_estimated) == (21, len(ANSWER), False)
    assert answer.cost == pytest.approx((21 * 0.15 + len(ANSWER) * 0.60) / 1e6) and not answer.cost_unknown
    [request] = server.seen
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "top_k" not in request.body  # llama.cpp's extras are not sent to a cloud API
    assert len(str(request.body)) < answer.bytes_sent < len(str(request.body)) + 2000
    [(conversation, hosts, sent, cost)] = services.store.conversations_that_left()
    assert (conversation.id, hosts, sent, cost) == (openai_chat.id, ADDRESS, answer.bytes_sent, answer.cost)


@needs_network_address
def test_anthropic_through_its_own_api(services, server, monkeypatch):
    monkeypatch.setenv(secrets.env_name("anthropic"), KEY)
    services.providers.add("anthropic", base_url=server.url)
    conversation = services.store.create_conversation(title="t", system_prompt="Be brief.",
                                                      model="anthropic/claude-sonnet-4-5")
    answer = ask(services, conversation)
    assert (answer.status, answer.content, answer.processed_on) == ("complete", "".join(ANSWER), ADDRESS)
    assert (answer.tokens_in, answer.tokens_out) == (19, len(ANSWER))
    assert answer.cost == pytest.approx((19 * 3.0 + len(ANSWER) * 15.0) / 1e6)
    [request] = server.seen
    assert request.path == "/v1/messages" and request.headers["x-api-key"] == KEY
    assert request.body["system"] == "Be brief." and request.body["messages"][0]["role"] == "user"


@pytest.mark.parametrize("failure, words", [
    ("401", "refused the key (401). Check the key in Providers"),
    ("404", "does not know the model “gpt-4o-mini” (404)"),
])
def test_a_refusal_is_a_sentence_and_the_question_is_kept(services, server, openai_chat, failure, words):
    server.next = [failure]
    answer = ask(services, openai_chat, "Keep this question")
    assert answer.status == "error" and words in answer.error
    assert [m.content for m in services.store.messages(openai_chat.id) if m.role == "user"] == ["Keep this question"]
    assert len(server.seen) == 1  # not retried


def test_a_rate_limit_is_waited_out_as_retry_after_says(services, server, openai_chat):
    server.next = ["429:1", "500"]
    waits = []
    services.chat.on_wait = lambda seconds, why: waits.append((round(seconds, 1), why))
    answer = ask(services, openai_chat)
    assert answer.status == "complete" and answer.content == "".join(ANSWER)
    assert waits[0] == (1.0, "rate limit") and waits[1][1] == "server error"
    assert len(server.seen) == 3


def test_a_stream_cut_in_the_middle_keeps_what_arrived_marked_incomplete(services, server, openai_chat):
    server.next = ["cut"]
    answer = ask(services, openai_chat)
    assert answer.status == "error" and "incomplete" in answer.error
    assert answer.content == "".join(ANSWER[:3])


@needs_network_address
def test_stop_ends_a_cloud_answer_at_once_and_keeps_what_arrived(services, server, openai_chat):
    server.next = ["drip:0.5"]

    async def stop_halfway():
        task = asyncio.ensure_future(services.chat.send(openai_chat.id, "Tell me slowly."))
        while not (live := services.chat.live_answer()) or not live.text:
            await asyncio.sleep(0.02)
        services.chat.stop()
        return await task

    answer = asyncio.run(stop_halfway())
    assert answer.status == "stopped" and answer.content == ANSWER[0]
    assert answer.usage_estimated and answer.tokens_out == 1 and answer.bytes_sent > 0  # the question went


def test_an_api_without_usage_figures_gets_an_estimate_marked_as_such(services, server, openai_chat):
    server.next = ["no-usage"]
    answer = ask(services, openai_chat)
    assert answer.status == "complete" and answer.usage_estimated
    assert answer.tokens_out == round(len("".join(ANSWER)) / 4) and answer.tokens_in > 0


def test_a_slow_first_byte_is_waited_for_and_a_silent_one_times_out(services, server, openai_chat, monkeypatch):
    server.next = ["slow:0.5"]
    assert ask(services, openai_chat).status == "complete"
    monkeypatch.setattr(cloud, "CLOUD_TIMEOUT_S", 0.3)
    server.next = ["slow:2"]
    answer = ask(services, openai_chat)
    assert answer.status == "error" and "OpenAI did not answer within 0.3 s" in answer.error


def test_no_network_says_so(services, openai_chat):
    services.providers.add("openai", base_url="http://127.0.0.1:9/v1")  # nothing listens there
    answer = ask(services, openai_chat)
    assert answer.status == "error"
    assert answer.error == ("Hearth could not reach OpenAI (127.0.0.1). Check your network connection and the "
                            "provider's address, then try again.")


def test_a_cloud_provider_without_a_key_says_how_to_add_one(services, server):
    services.providers.add("openai", base_url="https://api.openai.com/v1")
    conversation = services.store.create_conversation(title="t", model="openai/gpt-4o")
    answer = ask(services, conversation)
    assert answer.status == "error"
    assert "needs an API key" in answer.error and "HEARTH_KEY_OPENAI" in answer.error
    assert server.connections == 0


@needs_network_address
def test_offline_mode_refuses_before_a_byte_is_sent(services, server, openai_chat):
    net.set_offline(True)
    answer = ask(services, openai_chat)
    assert answer.status == "error" and f"Offline mode is on, so Hearth did not connect to {ADDRESS}" in answer.error
    with pytest.raises(net.OfflineError):
        asyncio.run(cloud.list_models(services.providers.get("openai")))
    from desktop.core import hub

    with pytest.raises(net.OfflineError):
        asyncio.run(hub.search("smol", endpoint_url=server.url))
    assert server.connections == 0  # not even a connection was opened
    net.set_offline(False)
    assert ask(services, openai_chat).status == "complete"


@needs_network_address
def test_offline_mode_is_a_setting_that_outlives_a_restart(services, server, openai_chat, home):
    from dataclasses import replace

    from desktop.core.services import open_services

    services.save_settings(replace(services.settings, offline=True))
    net.set_offline(False)
    again = open_services()
    try:
        assert net.offline()
        assert ask(again, openai_chat).status == "error"
    finally:
        again.close()
    assert server.connections == 0


def test_a_key_never_reaches_a_file_or_a_log(services, server, home, caplog):
    from desktop.core.services import setup_logging

    level = logging.getLogger().level
    setup_logging(services.paths, verbose=True)  # the app's own log file, as chatty as it gets
    caplog.set_level(logging.DEBUG)
    secrets.put("openai", KEY)  # this machine has no keyring: memory only
    try:
        services.providers.add("openai", base_url=server.url + "/v1")
        conversation = services.store.create_conversation(title="t", model="openai/gpt-4o-mini")
        server.next = ["401"]
        ask(services, conversation)
        ask(services, conversation)
        asyncio.run(cloud.list_models(services.providers.get("openai")))
    finally:
        secrets.forget("openai")
        for handler in logging.getLogger().handlers[:]:
            if getattr(handler, "baseFilename", "").startswith(str(home)):
                logging.getLogger().removeHandler(handler)
                handler.close()
        logging.getLogger().setLevel(level)
    assert server.seen[-1].headers["authorization"] == f"Bearer {KEY}"  # it was used
    written = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "providers.json" for p in written) and any(p.suffix == ".log" for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text


def test_providers_are_added_from_presets_or_an_address_and_removed_with_their_key(services, server):
    registry = services.providers
    openai = registry.add("openai")
    assert (openai.base_url, openai.kind, openai.processed_on) == ("https://api.openai.com/v1", "openai", "api.openai.com")
    own = registry.add("box", base_url="http://192.168.1.20:8000/v1/", own=True)
    assert own.base_url == "http://192.168.1.20:8000/v1" and own.own
    assert registry.target("box/qwen2.5:7b").model == "qwen2.5:7b" and registry.target("smollm2") is None
    for bad, words in [("Bad Name", "cannot be a provider's name"), ("somewhere", "give its address"),
                       ("x", "is not a web address")]:
        with pytest.raises(ProviderSetupError, match=words):
            registry.add(bad, base_url="ftp://x" if bad == "x" else "")
    with pytest.raises(ProviderSetupError) as refused:  # a name that would move the terminal's cursor
        registry.add("evil\x1b[2J\nname", base_url="http://127.0.0.1:9/v1")
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value)
    assert "evil\\x1b[2j\\nname" in str(refused.value)  # (names are lower-cased first)
    secrets.put("box", "k")
    registry.remove("box")
    assert secrets.get("box") is None and [p.name for p in registry.all()] == ["openai"]


def test_listing_a_providers_models_tests_its_address_and_key(services, server):
    services.providers.add("mine", base_url=server.url + "/v1")
    assert asyncio.run(cloud.list_models(services.providers.get("mine"))) == ["gpt-4o-mini", "stand-in-large"]
    server.next = ["401"]
    with pytest.raises(Exception, match="refused the key"):
        asyncio.run(cloud.list_models(services.providers.get("mine")))
    services.providers.add("wrong", base_url=server.url + "/nope")
    with pytest.raises(ProviderSetupError, match="no model list"):
        asyncio.run(cloud.list_models(services.providers.get("wrong")))


def test_a_character_split_across_two_events_arrives_whole_and_a_lone_half_becomes_a_replacement():
    from desktop.core.providers import Utf16Joiner

    join = Utf16Joiner()
    pieces = [join("Red \ud83c"), join("\udfa8 and a lone \ud800."), join("\udbff"), join.flush()]
    assert "".join(pieces) == "Red 🎨 and a lone \ufffd.\ufffd"
    "".join(pieces).encode("utf-8")  # printable and storable
