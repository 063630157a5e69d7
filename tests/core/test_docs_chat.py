"""Chat with your documents through the core chat service (issue 18), with the real SmolLM2 engine
and real files made here: a small file goes in whole and the chat says so; a long PDF is searched
and the prompt gives the right page's passage as [1], saved as the answer's source; nothing found
is said; a cloud model gets no passage before the user allows it, and the bytes are counted."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from desktop.core import net, secrets
from desktop.core.docs import DocumentError
from desktop.core.docs.context import (
    INSTRUCTION,
    NOTHING_FOUND_NOTICE,
    NOTHING_FOUND_PROMPT,
    chat_collection,
    cited,
    is_hidden,
)
from desktop.core.settings import LoadOptions, Sampling
from desktop.core.store import MIGRATIONS, Store
from tests.cloud_server import CloudServer, network_address
from tests.pdf_forge import write_pdf

SHORT = Sampling(max_tokens=24, temperature=0.0, seed=1)
FACT = "The cat of the lighthouse keeper is named Marmalade Quill."
FILLER = ("The harbour town kept its records in ledgers bound with blue thread. Fishing boats went out "
          "before dawn and came back with the tide, and the market opened when the bell rang twice. ")


def long_pdf(folder: Path) -> Path:
    """Thirty pages of harbour-town filler; the cat's name only on page 3."""
    pages = []
    for number in range(1, 31):
        body = f"Page {number} of the harbour records. " + FILLER * 8
        if number == 3:
            body = f"Page 3 of the harbour records. {FILLER} {FACT} {FILLER}"
        pages.append(body)
    return write_pdf(folder / "harbour.pdf", pages)


def _chat(services, model, n_ctx: int = 2048):
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=n_ctx, n_threads=2))
    conversation = services.chat.new_conversation(model_id=model.id)
    services.store.update_conversation(conversation.id, sampling=asdict(SHORT))
    return conversation


def _notices(services) -> list[str]:
    said: list[str] = []
    services.chat.on_notice = said.append
    return said


# -- the store ------------------------------------------------------------------------------------
def test_a_conversations_documents_and_an_answers_sources_are_kept_and_go_with_the_chat(tmp_path):
    store = Store(tmp_path / "hearth.db")
    chat = store.create_conversation()
    store.add_conversation_documents(chat.id, "file", ["/a/report.pdf", "/a/notes.txt"])
    store.add_conversation_documents(chat.id, "collection", ["work"])
    store.add_conversation_documents(chat.id, "file", ["/a/report.pdf"])  # twice is once
    assert store.conversation_documents(chat.id) == [
        ("file", "/a/report.pdf"), ("file", "/a/notes.txt"), ("collection", "work")]
    sources = [{"n": 1, "path": "/a/report.pdf", "name": "report.pdf", "page": 3, "heading": "", "text": "It is."}]
    answer = store.add_message(chat.id, "assistant", "Yes [1].", sources=sources)
    assert store.message(answer.id).sources == sources
    assert store.add_message(chat.id, "user", "q").sources == []
    store.grant_documents_consent(chat.id, "openai")
    assert store.documents_consent(chat.id) == {"openai"}
    store.delete_conversation(chat.id)
    raw = sqlite3.connect(tmp_path / "hearth.db")
    assert raw.execute("SELECT COUNT(*) FROM conversation_documents").fetchone()[0] == 0
    assert raw.execute("SELECT COUNT(*) FROM documents_consent").fetchone()[0] == 0


def test_a_database_from_before_documents_opens_with_its_answers_sourceless(tmp_path):
    path = tmp_path / "hearth.db"
    raw = sqlite3.connect(path)
    before = next(i for i, script in enumerate(MIGRATIONS) if "conversation_documents" in script)
    for version, script in enumerate(MIGRATIONS[:before], start=1):
        raw.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
    raw.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('old', 0, 0)")
    raw.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at)"
                " VALUES (1, 'assistant', 'kept', 0, 0)")
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    [message] = store.messages(1)
    assert (message.content, message.sources) == ("kept", [])


def test_citations_are_checked_against_the_sources_given():
    sources = [{"n": 1}, {"n": 2}]
    assert cited("Marmalade [2], as said [1] and [1, 2]; not [7].", sources) == [2, 1]
    assert cited("No sources here.", sources) == []


def test_a_chats_own_collection_is_hidden_by_its_name():
    assert is_hidden(chat_collection(12)) and chat_collection(12) == ".chat-12"
    assert not is_hidden("work")


def test_attaching_keeps_what_can_be_read_and_says_why_not_for_the_rest(services, tmp_path):
    chat = services.store.create_conversation()
    notes = tmp_path / "notes.txt"
    notes.write_text("Plain notes.", encoding="utf-8")
    picture = tmp_path / "photo.xyz"
    picture.write_bytes(b"\x89PNG\r\n")
    folder = tmp_path / "reports"
    folder.mkdir()
    refused = services.chat.attach(chat.id, [str(notes), str(picture), str(tmp_path / "gone.txt"), str(folder)])
    assert len(refused) == 3 and "photo.xyz" in refused[0] and "gone.txt" in refused[1]
    assert refused[2].startswith("“reports” is a folder: add it to a collection")
    assert services.chat.documents(chat.id).files == (str(notes.resolve()),)
    binary = tmp_path / "data.txt"
    binary.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(DocumentError):
        services.chat.attach(chat.id, [str(binary)])
    assert services.chat.documents(chat.id).files == (str(notes.resolve()),)
    services.chat.detach(chat.id, str(notes))
    assert not services.chat.documents(chat.id)


def test_a_collection_that_does_not_exist_is_a_sentence(services):
    chat = services.store.create_conversation()
    with pytest.raises(DocumentError, match="no collection named “nowhere”"):
        services.chat.use_collections(chat.id, ["nowhere"])
    assert services.chat.documents(chat.id).collections == ()


# -- with the real engine -------------------------------------------------------------------------
def test_a_small_file_goes_in_whole_and_the_chat_says_so_once(services, model, tmp_path):
    conversation = _chat(services, model)
    said = _notices(services)
    note = tmp_path / "trip.txt"
    note.write_text(f"Trip notes.\n\n{FACT}\n", encoding="utf-8")
    assert services.chat.attach(conversation.id, [str(note)]) == []
    answer = asyncio.run(services.chat.send(conversation.id, "What is the cat's name?"))
    assert answer.status == "complete"
    [whole] = [s for s in said if "goes in whole" in s]
    assert whole.startswith("“trip.txt” goes in whole (") and whole.endswith(" tokens).")
    system = services.chat.last_request[0]
    assert system["role"] == "system"
    assert system["content"].count(INSTRUCTION) == 1
    assert f"[1] trip.txt (the whole document):\nTrip notes.\n\n{FACT}" in system["content"]
    assert [(s["n"], s["name"], s["page"]) for s in answer.sources] == [(1, "trip.txt", None)]
    assert services.store.message(answer.id).sources == answer.sources
    said.clear()
    again = asyncio.run(services.chat.regenerate(conversation.id))
    assert again.status == "complete" and again.sources == answer.sources  # written again from the same file
    assert not [s for s in said if "goes in whole" in s]  # said once per chat


def test_a_long_pdf_is_searched_and_the_answer_names_the_page_with_the_fact(services, model, tmp_path):
    conversation = _chat(services, model)
    said = _notices(services)
    pdf = long_pdf(tmp_path)
    assert services.chat.attach(conversation.id, [str(pdf)]) == []
    answer = asyncio.run(services.chat.send(conversation.id, "What is the cat of the lighthouse keeper named?"))
    assert answer.status == "complete"
    assert not [s for s in said if "goes in whole" in s]
    system = services.chat.last_request[0]["content"]
    assert system.startswith("You are a helpful assistant.\n\n" + INSTRUCTION)  # one system block
    assert "[1] harbour.pdf, page 3:\n" in system
    first = system.split("[1] harbour.pdf, page 3:\n", 1)[1]
    assert FACT in flat(first.split("\n\n[2] ", 1)[0])
    assert answer.sources[0]["n"] == 1 and answer.sources[0]["page"] == 3 and FACT in flat(answer.sources[0]["text"])
    assert services.store.message(answer.id).sources[0]["page"] == 3
    # the chat's own collection is hidden from the user's list of collections
    index = services.chat.document_index()
    assert chat_collection(conversation.id) in [c.name for c in index.collections()]
    assert tokens_fit(services, answer)


def flat(text: str) -> str:
    """The text with its line breaks (a PDF's lines) as spaces."""
    return " ".join(text.split())


def tokens_fit(services, answer) -> bool:
    """What was sent and the answer together fit the context the model was loaded with."""
    return answer.tokens_in + answer.tokens_out <= services.engine.n_ctx


def test_nothing_found_is_said_and_the_model_is_told(services, model, tmp_path):
    conversation = _chat(services, model)
    said = _notices(services)
    pdf = long_pdf(tmp_path)
    services.chat.attach(conversation.id, [str(pdf)])
    answer = asyncio.run(services.chat.send(conversation.id, "Quantum chromodynamics gluon?"))
    assert NOTHING_FOUND_NOTICE in said
    assert services.chat.last_request[0]["content"].endswith(NOTHING_FOUND_PROMPT)
    assert answer.sources == []


# -- a cloud model --------------------------------------------------------------------------------
KEY = "sk-test-docs-0000000000"


ADDRESS = network_address()  # a provider on this machine's loopback is this machine: nothing leaves


@pytest.fixture
def cloud(services, monkeypatch):
    net.set_offline(False)
    server = CloudServer(host=ADDRESS)
    monkeypatch.setenv(secrets.env_name("openai"), KEY)
    services.providers.add("openai", base_url=server.url + "/v1")
    yield server
    server.stop()
    net.set_offline(False)


@pytest.mark.skipif(ADDRESS is None, reason="this machine has no network address")
def test_a_cloud_model_gets_no_passage_until_the_user_allows_it_and_the_bytes_are_counted(services, cloud, tmp_path):
    conversation = services.store.create_conversation(title="t", model="openai/gpt-4o-mini")
    note = tmp_path / "trip.txt"
    note.write_text(f"Trip notes.\n\n{FACT}\n", encoding="utf-8")
    services.chat.attach(conversation.id, [str(note)])
    assert services.chat.documents_consent_needed(conversation.id)
    refused = asyncio.run(services.chat.send(conversation.id, "What is the cat's name?"))
    assert refused.status == "error" and "only once you allow it" in refused.error
    assert cloud.seen == []  # not a byte sent
    services.chat.grant_documents_consent(conversation.id)
    assert not services.chat.documents_consent_needed(conversation.id)
    answer = asyncio.run(services.chat.send(conversation.id, "What is the cat's name?"))
    assert answer.status == "complete"
    [request] = cloud.seen
    sent = request.body["messages"][0]["content"]
    assert FACT in sent and sent.startswith(INSTRUCTION)
    assert len(FACT) < answer.bytes_sent
    assert len(str(request.body).encode()) - 200 < answer.bytes_sent  # the passages' bytes are in it
    [(_, _, total, _)] = services.store.conversations_that_left()
    assert total == answer.bytes_sent


def test_a_detached_file_is_no_longer_searched(services, model, tmp_path):
    conversation = _chat(services, model)
    said = _notices(services)
    pdf = long_pdf(tmp_path)
    services.chat.attach(conversation.id, [str(pdf)])
    asyncio.run(services.chat.send(conversation.id, "What is the cat of the lighthouse keeper named?"))
    other = tmp_path / "other.pdf"
    write_pdf(other, [f"Page {n}. " + "Orchards and apple harvests in the valley. " * 30 for n in range(1, 31)])
    services.chat.detach(conversation.id, str(pdf))
    services.chat.attach(conversation.id, [str(other)])
    answer = asyncio.run(services.chat.send(conversation.id, "What is the cat of the lighthouse keeper named?"))
    assert "harbour.pdf" not in services.chat.last_request[0]["content"]
    assert all(s["name"] != "harbour.pdf" for s in answer.sources)
    assert NOTHING_FOUND_NOTICE in said


def test_a_deleted_chats_own_collection_leaves_the_index(services, tmp_path):
    from desktop.core.docs.index import DocumentIndex
    from desktop.core.docs.indexer import Indexer

    gone = services.store.create_conversation()
    kept = services.store.create_conversation()
    index = DocumentIndex(services.paths.data / "documents.db")
    note = tmp_path / "trip.txt"
    note.write_text(FACT, encoding="utf-8")
    for chat in (gone, kept):
        index.add([note], chat_collection(chat.id))
        asyncio.run(Indexer(index).run(collection=chat_collection(chat.id)))
    index.close()
    services.store.delete_conversation(gone.id)
    names = [c.name for c in services.chat.document_index().collections()]
    assert chat_collection(gone.id) not in names and chat_collection(kept.id) in names
