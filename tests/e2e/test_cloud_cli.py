"""`hearth providers`, `hearth chat -m PROVIDER/MODEL` and `hearth compare` in a terminal, against
the cloud stand-in on this machine's network address and the real local model."""

import os

import pytest

from tests.cloud_server import ANSWER, CloudServer, network_address
from tests.e2e.test_cli import hearth

ADDRESS = network_address()


@pytest.fixture
def server(home, monkeypatch):
    s = CloudServer(host=ADDRESS or "127.0.0.1")
    monkeypatch.setenv("HEARTH_KEY_OPENAI", "sk-test-cli")
    yield s
    s.stop()


def test_add_a_provider_list_its_models_chat_with_one_and_remove_it(server):
    assert "No providers: everything stays on this machine." in hearth("providers", "list").stdout
    added = hearth("providers", "add", "openai", "--base-url", server.url + "/v1")
    assert added.returncode == 0, added.stderr
    host = ADDRESS or "127.0.0.1"
    if ADDRESS:
        assert f"prompts you send to it leave this machine for {host}" in added.stdout
    listed = hearth("providers", "list").stdout
    assert "openai" in listed and "key set" in listed and "Well-known: openai, anthropic" in listed
    assert hearth("providers", "models", "openai").stdout.split() == ["gpt-4o-mini", "stand-in-large"]

    answer = hearth("chat", "-m", "openai/gpt-4o-mini", "What is the capital of France?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "".join(ANSWER)
    assert f"sending to OpenAI ({host if ADDRESS else 'this machine'})" in answer.stderr

    server.next = ["429:1"]
    waited = hearth("chat", "-m", "openai/gpt-4o-mini", "Again?")
    assert waited.returncode == 0 and "waiting 1 s (rate limit)" in waited.stderr

    server.next = ["401"]
    refused = hearth("chat", "-m", "openai/gpt-4o-mini", "Once more?")
    assert refused.returncode == 1 and "refused the key (401)" in refused.stderr
    assert refused.stdout == ""  # no answer: not even an empty line for a script to read
    server.next = ["401"]
    listing = hearth("providers", "models", "openai")
    assert listing.returncode == 1 and "Check the key in Providers." in listing.stderr and "“”" not in listing.stderr

    removed = hearth("providers", "rm", "openai")
    assert removed.returncode == 0 and "Removed OpenAI and its key." in removed.stdout
    gone = hearth("chat", "-m", "openai/gpt-4o-mini", "Hello?")
    assert gone.returncode == 1 and "No model called “openai/gpt-4o-mini” is installed" in gone.stderr


@pytest.mark.skipif(ADDRESS is None, reason="this machine has no network address")
def test_offline_mode_from_the_environment_refuses_the_cloud(server):
    hearth("providers", "add", "openai", "--base-url", server.url + "/v1")
    env = dict(os.environ, HEARTH_OFFLINE="1")
    out = hearth("chat", "-m", "openai/gpt-4o-mini", "Hello?", env=env)
    assert out.returncode == 1 and "Offline mode is on" in out.stderr
    assert server.connections == 0


@pytest.mark.skipif(ADDRESS is None, reason="this machine has no network address")
def test_a_blind_comparison_of_a_local_and_a_cloud_model_in_the_terminal(server, model_file):
    hearth("models", "import", "--link", str(model_file))
    hearth("providers", "add", "openai", "--base-url", server.url + "/v1")
    out = hearth("compare", "-m", "smollm2", "-m", "openai/gpt-4o-mini", "--blind", "--max-tokens", "16",
                 "--temperature", "0", "Name a colour.", input="a\n")
    assert out.returncode == 0, out.stderr
    assert "── A " in out.stdout and "── B " in out.stdout and "".join(ANSWER) in out.stdout
    assert "stayed on this machine" in out.stdout and f"sent to {ADDRESS}" in out.stdout
    assert "Which answer is better? A, B, tie, or bad" in out.stdout
    revealed = [line for line in out.stdout.splitlines() if " was " in line]
    assert sorted(line.split(" was ")[1] for line in revealed) == ["openai/gpt-4o-mini", "smollm2-135m-instruct-q4_1"]
    assert "Saved as comparison 1." in out.stdout


def test_a_reasoning_models_thinking_goes_to_stderr_and_only_the_answer_to_stdout(server):
    hearth("providers", "add", "openai", "--base-url", server.url + "/v1")
    thinking = [{"content": "<think>"}, {"content": "The user asks for"}, {"content": " a capital.</th"},
                {"content": "ink>\n\nParis."}]
    server.scripts = [list(thinking), list(thinking), [{"reasoning_content": "Counting words"}, {"content": "Four"}]]
    quiet = hearth("chat", "-m", "openai/gpt-4o-mini", "Capital of France?")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "Paris.\n"
    assert "hearth: thinking…" in quiet.stderr and "hearth: thought for" in quiet.stderr
    assert "The user asks" not in quiet.stderr  # hidden unless asked for

    shown = hearth("chat", "-m", "openai/gpt-4o-mini", "--show-thinking", "Capital of France?")
    assert shown.stdout == "Paris.\n"
    assert "The user asks for a capital." in shown.stderr and "\033[" not in shown.stderr  # no colour in a pipe

    server.finish = "length"
    cut = hearth("chat", "-m", "openai/gpt-4o-mini", "--max-tokens", "4", "How many words?")
    assert cut.returncode == 0 and cut.stdout == "Four\n"
    assert "stopped at the length limit" in cut.stderr


def test_a_model_file_without_a_chat_template_says_which_format_it_uses(home, model_file, tmp_path):
    from tests.gguf_forge import with_chat_template

    bare = with_chat_template(model_file, tmp_path / "SmolLM2-bare.gguf", None)
    out = hearth("chat", "-m", str(bare), "--temperature", "0", "--max-tokens", "40", "Name three colors.")
    assert out.returncode == 0, out.stderr
    assert "hearth: This file has no chat template; using the ChatML format" in out.stderr
    for marker in ("<|im_start|>", "<|im_end|>", "[INST]", "<<SYS>>"):
        assert marker not in out.stdout
    assert out.stdout.strip()
    assert hearth("models", "import", "--link", str(bare)).returncode == 0
    info = hearth("models", "info", "smollm2-bare")
    assert "prompt_format      None in this file: ChatML, found from its special tokens" in info.stdout


def test_words_that_turn_out_to_be_thinking_never_reach_a_pipe_and_escape_codes_never_reach_a_terminal(server):
    hearth("providers", "add", "openai", "--base-url", server.url + "/v1")
    # A server whose chat template opened the thinking block sends only its end.
    server.scripts = [[{"content": "The user wants colors. "}, {"content": "I will list three."},
                       {"content": "</think>"}, {"content": "\n\nRed, green, blue."}],
                      [{"content": "Plain \x1b[2J answer\x07 with a bell."}]]
    out = hearth("chat", "-m", "openai/gpt-4o-mini", "Name three colors.")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Red, green, blue.\n"
    assert "hearth: thought for" in out.stderr

    escaped = hearth("chat", "-m", "openai/gpt-4o-mini", "Say something.")
    assert escaped.stdout == "Plain [2J answer with a bell.\n"


def test_an_emoji_split_across_two_events_is_printed_and_saved_whole(server):
    hearth("providers", "add", "openai", "--base-url", server.url + "/v1")
    server.scripts = [[{"content": "Red \ud83c"}, {"content": "\udfa8 and blue."}]]
    out = hearth("chat", "-m", "openai/gpt-4o-mini", "A colour with an emoji?")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Red 🎨 and blue.\n" and "Traceback" not in out.stderr
    from desktop.core.paths import app_paths
    from desktop.core.store import Store

    store = Store(app_paths().database)
    saved = [m for c in store.conversations() for m in store.messages(c.id) if m.role == "assistant"]
    assert [(m.status, m.content) for m in saved] == [("complete", "Red 🎨 and blue.")]
    store.close()


def test_a_key_pasted_into_an_address_is_never_saved_or_printed_and_the_api_version_is_kept(server, home):
    secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    pasted = server.url + f"/v1?api-version=2024-05-01&api-key={secret}"
    added = hearth("providers", "add", "azure", "--base-url", pasted)
    assert added.returncode == 0, added.stderr
    assert secret not in added.stdout + added.stderr
    assert "The key in the address (api-key=) was taken out of it" in added.stdout
    assert "no keyring" in added.stdout  # this test machine has none: the user is told to use the variable
    assert f"({server.url}/v1?api-version=2024-05-01)" in added.stdout
    listed = hearth("providers", "list")
    assert f"{server.url}/v1?api-version=2024-05-01" in listed.stdout and secret not in listed.stdout
    assert secret not in hearth("providers", "list", "--json").stdout
    assert secret not in (home / "config" / "providers.json").read_text()

    env = dict(os.environ, HEARTH_KEY_AZURE=secret)
    answer = hearth("chat", "-m", "azure/gpt-4o-mini", "What is the capital of France?", env=env)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "".join(ANSWER)
    assert server.seen[-1].path == "/v1/chat/completions?api-version=2024-05-01"
    assert server.seen[-1].headers["authorization"] == f"Bearer {secret}"


def test_a_password_in_an_address_is_refused_in_one_line_when_the_provider_has_another_key(server, home):
    url = server.url.replace("://", "://me:hunter2-secret@") + "/v1"
    refused = hearth("providers", "add", "openai", "--base-url", url)  # HEARTH_KEY_OPENAI is set
    assert refused.returncode == 1
    assert "already has another one" in refused.stderr and "Traceback" not in refused.stderr
    assert "hunter2" not in refused.stdout + refused.stderr
    assert not (home / "config" / "providers.json").exists()
