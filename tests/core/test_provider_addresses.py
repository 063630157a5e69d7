"""A provider's address as people paste it: a password or a key written into it goes to the
keyring and never into providers.json or onto the screen; settings in its query (Azure's
api-version) are kept and sent after the route, where servers expect them."""

import asyncio

import pytest

from desktop.core import cloud, net, secrets
from desktop.core.cloud import ProviderSetupError
from tests.cloud_server import CloudServer, network_address

PASSWORD = "pw-Z9x8c7v6b5n4"
QUERY_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def server():
    s = CloudServer(host=network_address() or "127.0.0.1")
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def clean_state():
    net.set_offline(False)
    yield
    for name in ("box", "azure", "twice"):
        secrets.forget(name)


def with_userinfo(url: str, userinfo: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{userinfo}@{rest}"


def ask(services, model: str):
    conversation = services.store.create_conversation(title="t", model=model)
    return asyncio.run(services.chat.send(conversation.id, "What is the capital of France?"))


def test_a_password_in_the_address_goes_to_the_keyring_and_never_into_the_providers_file(services, server, home):
    added = services.providers.add("box", base_url=with_userinfo(server.url, f"me:{PASSWORD}") + "/v1/")
    assert added.base_url == server.url + "/v1"
    assert secrets.get("box") == PASSWORD
    saved = (services.paths.config / "providers.json").read_text()
    assert PASSWORD not in saved and "me:" not in saved

    assert asyncio.run(cloud.list_models(services.providers.get("box"))) == ["gpt-4o-mini", "stand-in-large"]
    assert ask(services, "box/gpt-4o-mini").status == "complete"
    assert server.seen[-1].headers["authorization"] == f"Bearer {PASSWORD}"
    for path in home.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_key_in_the_query_is_taken_out_and_azures_api_version_stays_after_the_route(services, server):
    added = services.providers.add("azure", base_url=server.url + f"/v1?api-version=2024-05-01&api-key={QUERY_KEY}")
    assert added.base_url == server.url + "/v1?api-version=2024-05-01"
    assert secrets.get("azure") == QUERY_KEY
    assert QUERY_KEY not in (services.paths.config / "providers.json").read_text()

    asyncio.run(cloud.list_models(services.providers.get("azure")))
    assert server.seen[-1].path == "/v1/models?api-version=2024-05-01"
    answer = ask(services, "azure/gpt-4o-mini")
    assert answer.status == "complete", answer.error
    request = server.seen[-1]
    assert request.path == "/v1/chat/completions?api-version=2024-05-01"
    assert request.headers["authorization"] == f"Bearer {QUERY_KEY}"


@pytest.mark.parametrize("param", ["key", "token", "api_key", "access_token", "x-api-key"])
def test_every_way_of_writing_a_key_into_the_query_is_recognised(services, param):
    added = services.providers.add("box", base_url=f"http://192.168.1.20:8000/v1?{param}={QUERY_KEY}", own=True)
    assert added.base_url == "http://192.168.1.20:8000/v1"
    assert secrets.get("box") == QUERY_KEY


def test_an_address_with_a_key_is_refused_when_the_provider_already_has_another(services):
    registry = services.providers
    registry.add("box", base_url="http://192.168.1.20:8000/v1", own=True, key="the-key-already-set")
    before = (services.paths.config / "providers.json").read_text()
    with pytest.raises(ProviderSetupError, match="already has another one") as refused:
        registry.add("box", base_url=f"http://192.168.1.20:8000/v1?api-key={QUERY_KEY}")
    assert QUERY_KEY not in str(refused.value) and "api-key=" in str(refused.value)
    with pytest.raises(ProviderSetupError, match="you gave another one"):
        registry.add("box", base_url=f"http://me:{PASSWORD}@192.168.1.20:8000/v1", key="a-third-key")
    with pytest.raises(ProviderSetupError, match="more than one secret"):
        registry.add("twice", base_url=f"http://me:{PASSWORD}@192.168.1.20:8000/v1?token={QUERY_KEY}")
    assert (services.paths.config / "providers.json").read_text() == before
    assert secrets.get("box") == "the-key-already-set" and secrets.get("twice") is None


def test_the_same_key_in_the_address_again_is_no_conflict(services):
    url = f"http://192.168.1.20:8000/v1?token={QUERY_KEY}"
    services.providers.add("box", base_url=url, own=True)
    assert services.providers.add("box", base_url=url, own=True).base_url == "http://192.168.1.20:8000/v1"


def test_a_key_a_server_repeats_in_its_error_is_masked_in_what_hearth_shows_and_saves(services, server, home):
    services.providers.add("box", base_url=server.url + "/v1", key="sk-proj-abcdefghijklmnopqrstuvwx")
    server.next = ["echo"]
    answer = ask(services, "box/gpt-4o-mini")
    assert answer.status == "error"
    assert "Deployment refused" in answer.error and "api_key=…" in answer.error and "sk-proj-…" in answer.error
    assert "abcdefghijklmnop" not in answer.error
    for path in home.rglob("*"):
        if path.is_file():
            assert b"abcdefghijklmnop" not in path.read_bytes(), path


def test_masking_keeps_ordinary_words_and_hides_key_like_strings():
    shown = secrets.redact("OpenAI said: Incorrect API key provided: sk-proj-abcdefghijklmnop1234. "
                           "Missing key: model. Try https://me:hunter2hunter2@host/v1?api-version=1&key=abc123 "
                           "with Authorization: Bearer abcdefghijklmnop; token=deadbeefdeadbeefdeadbeef")
    assert shown == ("OpenAI said: Incorrect API key provided: sk-proj-…. Missing key: model. "
                     "Try https://me:…@host/v1?api-version=1&key=… with Authorization: Bearer …; token=…")


def test_an_address_an_older_hearth_saved_with_its_key_is_cleaned_and_the_key_kept(services, server, ring):
    """providers.json from before addresses were cleaned: the key moves to the keyring, the file is
    rewritten without it, the query setting stays, and the provider still answers."""
    path = services.paths.config / "providers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = [{"name": "azure", "label": "Azure", "kind": "openai", "own": False,
            "base_url": server.url + f"/v1?api-version=2024-05-01&api-key={QUERY_KEY}", "models": ["gpt-4o-mini"]}]
    path.write_text(__import__("json").dumps(old))

    provider = services.providers.get("azure")
    assert provider.base_url == server.url + "/v1?api-version=2024-05-01"
    assert secrets.get("azure") == QUERY_KEY
    assert QUERY_KEY not in path.read_text() and "api-version=2024-05-01" in path.read_text()
    assert ask(services, "azure/gpt-4o-mini").status == "complete"
    assert server.seen[-1].headers["authorization"] == f"Bearer {QUERY_KEY}"
    assert ring.items == {("Hearth", "azure"): QUERY_KEY}


def test_without_a_keyring_an_old_address_keeps_its_key_in_the_file_but_never_shows_it(services, server):
    """With nowhere safe to move it, the key stays where the user left it (else it would be gone
    after this run); it is still never shown, and requests go to the right place."""
    path = services.paths.config / "providers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = __import__("json").dumps([{"name": "azure", "label": "Azure", "kind": "openai", "models": ["gpt-4o-mini"],
                                      "base_url": server.url + f"/v1?api-version=2024-05-01&api-key={QUERY_KEY}"}])
    path.write_text(text)
    assert services.providers.get("azure").base_url == server.url + "/v1?api-version=2024-05-01"
    assert path.read_text() == text
    assert ask(services, "azure/gpt-4o-mini").status == "complete"
    assert server.seen[-1].path.startswith("/v1/chat/completions?api-version=2024-05-01")


def test_an_old_address_with_a_key_other_than_the_kept_one_is_not_rewritten(services, server, ring):
    """Two different keys (one kept, one in the old address): nothing is thrown away, nothing shown."""
    path = services.paths.config / "providers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    secrets.put("box", "the-kept-key-123456")
    text = __import__("json").dumps([{"name": "box", "label": "Box", "kind": "openai",
                                      "base_url": with_userinfo(server.url, f"me:{PASSWORD}") + "/v1"}])
    path.write_text(text)
    assert services.providers.get("box").base_url == server.url + "/v1"
    assert path.read_text() == text
    assert secrets.get("box") == "the-kept-key-123456"


@pytest.mark.parametrize(("typed", "kept", "where"), [
    ("/v1;api-key={k}", "/v1", ";api-key="),
    ("/v1?code={k}&api-version=1", "/v1?api-version=1", "code="),
    ("/v1;x-functions-key={k};v=2", "/v1;v=2", ";x-functions-key="),
])
def test_keys_in_path_parameters_and_azure_functions_codes_are_taken_out(services, server, typed, kept, where):
    added = services.providers.add("azure", base_url=server.url + typed.format(k=QUERY_KEY))
    assert added.base_url == server.url + kept
    assert secrets.get("azure") == QUERY_KEY
    assert QUERY_KEY not in (services.paths.config / "providers.json").read_text()
