"""Secrets: the environment first, then the system keyring, else memory for this run only."""

import keyring
from keyring.backends import fail

from desktop.core import secrets


def test_a_secret_goes_to_the_keyring_and_nowhere_else(ring, home, monkeypatch):
    monkeypatch.delenv("HEARTH_KEY_HUGGINGFACE", raising=False)
    assert secrets.put(secrets.HUB, "hf_secret_value") is True
    assert ring.items == {("Hearth", "huggingface"): "hf_secret_value"}
    assert secrets.get(secrets.HUB) == "hf_secret_value"
    assert secrets.hub_token_source() == "in the system keyring"
    secrets.forget(secrets.HUB)
    assert ring.items == {}


def test_without_a_keyring_a_secret_lives_in_memory_for_this_run(home, monkeypatch):
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert secrets.keyring_available() is False
        assert secrets.put("example", "sk-in-memory") is False
        assert secrets.get("example") == "sk-in-memory"
    finally:
        keyring.set_keyring(before)
        secrets._memory.clear()


def test_the_environment_wins_and_is_named_after_the_secret(ring, monkeypatch):
    monkeypatch.setenv("HEARTH_KEY_MY_CLOUD", "from-env")
    secrets.put("my-cloud", "from-ring")
    assert secrets.get("my-cloud") == "from-env"
