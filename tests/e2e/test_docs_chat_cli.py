"""`hearth chat --file/--docs` in a terminal (issue 18): the answer alone on stdout, its sources on
stderr after it; a file or collection it cannot use is one sentence; a cloud model gets passages
only with --send-documents. The real SmolLM2 engine, the cloud stand-in on this machine's address."""

import asyncio
import sqlite3

import pytest

from tests.cloud_server import CloudServer, network_address
from tests.core.test_docs_chat import FACT, long_pdf
from tests.e2e.test_cli import hearth

ADDRESS = network_address()
QUICK = ("--max-tokens", "12", "--seed", "1", "--temperature", "0")


@pytest.fixture
def installed(home, model_file):
    added = hearth("models", "import", "--link", str(model_file))
    assert added.returncode == 0, added.stderr
    return home


def test_a_small_file_goes_in_whole_and_its_source_follows_the_answer_on_stderr(installed, tmp_path):
    note = tmp_path / "trip.txt"
    note.write_text(f"Trip notes.\n\n{FACT}\n", encoding="utf-8")
    result = hearth("chat", "-m", "smollm2", *QUICK, "--file", str(note), "What is the cat named?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "Sources" not in result.stdout  # the answer alone, for a pipe
    assert "hearth: “trip.txt” goes in whole (" in result.stderr
    assert result.stderr.rstrip().endswith("Sources:\n[1] trip.txt")
    db = sqlite3.connect(installed / "data" / "hearth.db")
    [(kind, value)] = db.execute("SELECT kind, value FROM conversation_documents").fetchall()
    assert (kind, value) == ("file", str(note.resolve()))


def test_a_long_pdf_is_searched_and_the_page_with_the_fact_is_source_1(installed, tmp_path):
    pdf = long_pdf(tmp_path)
    result = hearth("chat", "-m", "smollm2", *QUICK, "--file", str(pdf),
                    "What is the cat of the lighthouse keeper named?")
    assert result.returncode == 0, result.stderr
    assert "Sources:\n[1] harbour.pdf, page 3\n" in result.stderr + "\n"
    assert "Traceback" not in result.stderr
    listed = hearth("docs", "list", "--json")  # the chat's own collection is not the user's
    assert listed.returncode == 0 and ".chat-" not in listed.stdout


def test_a_collection_is_searched_with_docs(installed, tmp_path):
    from desktop.core.docs.index import DocumentIndex
    from desktop.core.docs.indexer import Indexer

    pdf = long_pdf(tmp_path)
    index = DocumentIndex(installed / "data" / "documents.db")
    index.add([pdf], "harbour")
    asyncio.run(Indexer(index).run(collection="harbour"))
    index.close()
    result = hearth("chat", "-m", "smollm2", *QUICK, "--docs", "harbour", "Who is Marmalade Quill?")
    assert result.returncode == 0, result.stderr
    assert "[1] harbour.pdf, page 3" in result.stderr
    assert "Keywords only" in result.stderr  # no embedding model installed: said once
    listed = hearth("docs", "list")
    assert "harbour" in listed.stdout and ".chat-" not in listed.stdout


@pytest.mark.parametrize("make, args, words", [
    (lambda p: p.write_bytes(bytes(range(256)) * 64), ["--file"], "is not text"),
    (lambda p: None, ["--file"], "is not a file Hearth can find"),
    (lambda p: None, ["--docs", "nowhere"], "There is no collection named “nowhere”."),
])
def test_a_file_or_collection_it_cannot_use_is_one_sentence_and_no_chat_is_kept(installed, tmp_path, make, args,
                                                                                words):
    path = tmp_path / "data.txt"
    make(path)
    command = ["chat", "-m", "smollm2", *args, *([str(path)] if args == ["--file"] else []), "Hello?"]
    result = hearth(*command)
    assert result.returncode == 1
    assert words in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    db = sqlite3.connect(installed / "data" / "hearth.db")
    assert db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 0


@pytest.mark.skipif(ADDRESS is None, reason="this machine has no network address")
def test_a_cloud_model_gets_passages_only_with_send_documents(home, tmp_path, monkeypatch):
    server = CloudServer(host=ADDRESS)
    monkeypatch.setenv("HEARTH_KEY_OPENAI", "sk-test-cli")
    try:
        assert hearth("providers", "add", "openai", "--base-url", server.url + "/v1").returncode == 0
        note = tmp_path / "trip.txt"
        note.write_text(f"Trip notes.\n\n{FACT}\n", encoding="utf-8")
        refused = hearth("chat", "-m", "openai/gpt-4o-mini", "--file", str(note), "The cat?")
        assert refused.returncode == 1 and "Add --send-documents to allow that" in refused.stderr
        assert [s for s in server.seen if s.path.endswith("/chat/completions")] == []
        sent = hearth("chat", "-m", "openai/gpt-4o-mini", "--file", str(note), "--send-documents", "The cat?")
        assert sent.returncode == 0, sent.stderr
        [request] = [s for s in server.seen if s.path.endswith("/chat/completions")]
        assert FACT in request.body["messages"][0]["content"]
        assert sent.stderr.rstrip().endswith("Sources:\n[1] trip.txt")
        db = sqlite3.connect(home / "data" / "hearth.db")
        bytes_sent = db.execute("SELECT bytes_sent FROM messages WHERE role = 'assistant'").fetchone()[0]
        assert bytes_sent > len(str(request.body).encode()) - 200
    finally:
        server.stop()


def test_with_an_embedding_model_installed_the_chat_searches_by_meaning_too_and_leaves_no_engine(installed, tmp_path):
    import psutil

    from tests.gguf_forge import forge_bert

    bert = forge_bert(tmp_path / "forged-bert-embedding.gguf")
    assert hearth("models", "import", "--link", str(bert)).returncode == 0
    pdf = long_pdf(tmp_path)
    result = hearth("chat", "-m", "smollm2", *QUICK, "--file", str(pdf),
                    "What is the cat of the lighthouse keeper named?")
    assert result.returncode == 0, result.stderr
    assert "Keywords only" not in result.stderr  # hybrid: keywords and the embedding model's vectors
    assert "Sources:\n[1] harbour.pdf, page 3\n" in result.stderr + "\n"
    home = str(installed)
    left = [p for p in psutil.process_iter(["cmdline", "environ"])
            if "engine" in (p.info["cmdline"] or []) and (p.info["environ"] or {}).get("HEARTH_HOME") == home]
    assert left == []  # the chat model's and the embedding model's engine children both stopped
