"""The document index on real files and a real SQLite (apsw + sqlite-vec): a folder of notes and
a PDF indexed, searched, changed, broken, stopped and removed, as a user would, and hybrid search
with vectors from the real SmolLM2 engine in llama.cpp's embedding mode."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from desktop.core.docs import DocumentError
from desktop.core.docs.index import DocumentIndex, fts_query
from desktop.core.docs.indexer import Indexer
from tests.pdf_forge import write_pdf

NOTES = {
    "garden.md": "# Garden\n\nTomatoes need six hours of sun a day and deep watering twice a week.\n",
    "bread.txt": "Sourdough bread rises slowly: the starter is fed with flour and water the night before.\n",
    "bikes.md": "# Bicycles\n\nA chain should be oiled every few hundred kilometres, and wiped clean after.\n",
    "taxes.txt": "The quarterly tax return is due at the end of the month that follows the quarter.\n",
}


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def index(tmp_path: Path):
    opened = DocumentIndex(tmp_path / "data" / "documents.db")
    yield opened
    opened.close()


def run(indexer: Indexer, collection: str | None = None, progress=None):
    return asyncio.run(indexer.run(collection, progress=progress))


def test_a_folder_of_notes_is_indexed_and_the_right_file_comes_first(index, notes):
    added = index.add([notes], "home")
    assert sorted(Path(p).name for p in added.added) == sorted(NOTES)
    seen = []
    result = run(Indexer(index), "home", progress=seen.append)

    assert result.indexed == 4 and result.failed == 0
    assert seen[-1].files_done == seen[-1].files_total == 4 and seen[-1].passages == result.passages
    assert all(f.state == "done" and f.passages >= 1 for f in index.files("home"))
    for query, expected in [("how often should I oil my bike chain", "bikes.md"),
                            ("when is the quarterly tax return due", "taxes.txt"),
                            ("feeding a sourdough starter", "bread.txt"),
                            ("hours of sun for tomatoes", "garden.md")]:
        found = index.search(query, collections=["home"])
        assert found.passages[0].name == expected, query
        assert found.mode == "keywords" and found.note  # says it was keywords only
    collection = index.collection("home")
    assert (collection.files, collection.failed, collection.waiting) == (4, 0, 0)
    # Adding the same folder again adds nothing and indexes nothing.
    again = index.add([notes], "home")
    assert not again.added and len(again.known) == 4
    assert run(Indexer(index), "home").indexed == 0


def test_the_fact_on_page_3_of_a_pdf_is_found_first_with_its_page(index, notes):
    write_pdf(notes / "report.pdf", ["Introduction to the annual report.", "Revenue grew in every region.",
                                     "The lighthouse keeper counted 4711 migrating cranes in October.",
                                     "Outlook for next year."])
    index.add([notes])
    run(Indexer(index))

    best = index.search("how many cranes did the lighthouse keeper count").passages[0]
    assert (best.name, best.page) == ("report.pdf", 3)
    assert "4711" in best.text and best.where() == "report.pdf, page 3"
    report = next(f for f in index.files() if f.name == "report.pdf")
    assert report.pages == 4
    assert "4711 migrating cranes" in index.whole_text(notes / "report.pdf")


@pytest.mark.parametrize("query", ['"', 'AND(', '*', 'tax" OR', 'NEAR(sun, 2)', 'col:umn', '^start', '-', '""""',
                                   "(((", "sun AND", "NOT", "   ", "ß ü é 日本"])
def test_a_query_with_search_syntax_in_it_never_fails(index, notes, query):
    index.add([notes])
    run(Indexer(index))
    found = index.search(query)  # no exception: every word is quoted
    assert found.mode == "keywords"
    assert fts_query(query).count('"') % 2 == 0


def test_a_file_that_cannot_be_read_is_listed_with_its_reason_and_the_rest_indexed(index, notes):
    (notes / "photo.txt").write_bytes(bytes(range(256)) * 64)  # a binary file named .txt
    index.add([notes])
    result = run(Indexer(index))

    assert (result.indexed, result.failed) == (4, 1)
    failed = [f for f in index.files() if f.state == "failed"]
    assert [f.name for f in failed] == ["photo.txt"]
    assert failed[0].reason and "Traceback" not in failed[0].reason
    assert index.collection("default").failed == 1
    assert index.search("sourdough").passages[0].name == "bread.txt"


def test_a_changed_file_is_indexed_again_and_a_removed_file_dropped(index, notes):
    index.add([notes])
    run(Indexer(index))
    (notes / "bread.txt").write_text("Rye bread needs caraway seeds.\n", encoding="utf-8")
    stat = (notes / "bread.txt").stat()
    os.utime(notes / "bread.txt", (stat.st_atime, stat.st_mtime + 10))
    (notes / "taxes.txt").unlink()

    result = run(Indexer(index))

    assert result.indexed == 1
    assert index.search("caraway").passages[0].name == "bread.txt"
    assert not index.search("sourdough starter").passages  # the old text is gone
    assert not index.search("quarterly tax").passages  # so is the removed file
    assert sorted(f.name for f in index.files()) == ["bikes.md", "bread.txt", "garden.md"]
    passages = index._one("SELECT COUNT(*) FROM passages")[0]
    assert passages == sum(f.passages for f in index.files())


def test_hidden_folders_links_outside_and_unknown_files_are_skipped(index, notes, tmp_path):
    (notes / ".git").mkdir()
    (notes / ".git" / "config.txt").write_text("secret remote\n")
    (notes / "song.mp3").write_bytes(b"ID3")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("outside the folder\n")
    (notes / "link.txt").symlink_to(outside)
    (notes / "inside.txt").symlink_to(notes / "bread.txt")

    added = index.add([notes, tmp_path / "missing", notes / "song.mp3"], "home")

    names = sorted(Path(p).name for p in added.added)
    assert names == sorted(NOTES)  # the link inside leads to bread.txt, already there
    reasons = {Path(p).name: why for p, why in added.skipped}
    assert "outside" in reasons["link.txt"]
    assert "no such" in reasons["missing"].lower()
    assert ".mp3" in reasons["song.mp3"]
    assert "config.txt" not in reasons and not any(".git" in p for p in added.added)


def test_removing_a_collection_forgets_its_passages(index, notes, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "ships.txt").write_text("The clipper ship carried tea from China.\n")
    index.add([notes], "home")
    index.add([other], "work")
    run(Indexer(index))

    assert index.remove("home") == 4
    assert [c.name for c in index.collections()] == ["work"]
    assert not index.search("sourdough").passages
    assert index.search("clipper").passages[0].collection == "work"
    assert index._one("SELECT COUNT(*) FROM passages_fts")[0] == index._one("SELECT COUNT(*) FROM passages")[0]
    with pytest.raises(DocumentError, match="no collection named"):
        index.remove("home")
    with pytest.raises(DocumentError, match="no collection named"):
        index.search("tea", collections=["home"])


def test_a_stopped_run_keeps_what_was_indexed_and_the_next_run_finishes(index, notes):
    for i in range(12):
        (notes / f"extra{i:02}.txt").write_text(f"Extra note number {i} about lanterns.\n")
    index.add([notes])

    async def stop_after_three():
        task = asyncio.ensure_future(Indexer(index).run(progress=lambda p: p.files_done >= 3 and task.cancel()))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_after_three())
    states = [f.state for f in index.files()]
    assert 3 <= states.count("done") < 16 and "indexing" not in states
    run(Indexer(index))
    assert [f.state for f in index.files()] == ["done"] * 16
    ordinals = index._all("SELECT file_id, ordinal, COUNT(*) FROM passages GROUP BY file_id, ordinal HAVING COUNT(*) > 1")
    assert ordinals == []  # nothing indexed twice


def test_a_run_killed_while_reading_a_file_reads_it_again(index, notes):
    index.add([notes])
    entry = index.files()[0]
    index.mark_indexing(entry.id)  # what a kill in the middle of this file leaves
    index.close()
    reopened = DocumentIndex(index.path)
    try:
        assert run(Indexer(reopened)).indexed == 4
        assert all(f.state == "done" for f in reopened.files())
    finally:
        reopened.close()


@pytest.mark.slow
def test_hybrid_search_fuses_keywords_and_smollm2_vectors(index, tmp_path, services, model):
    from desktop.core.docs.embedder import Embedder
    from desktop.core.settings import LoadOptions

    services.settings = replace(services.settings, load=LoadOptions(n_ctx=512, n_threads=2))
    folder = tmp_path / "facts"
    folder.mkdir()
    facts = ["Cats sleep for most of the day.", "Dogs were domesticated from wolves.",
             "The Nile flows north into the Mediterranean.", "Mount Everest is the highest mountain.",
             "Honey never spoils if kept sealed.", "Copper conducts electricity well.",
             "Owls hunt at night.", "The Moon has no atmosphere to speak of.",
             "Penguins cannot fly but swim fast.", "Bamboo can grow a metre in a day."]
    for i, fact in enumerate(facts):
        (folder / f"fact{i:02}.txt").write_text(fact + "\n")
    index.add([folder], "facts")
    embedder = Embedder(services, model)

    async def index_and_ask():
        try:
            await Indexer(index, embedder).run("facts")
            owls = index.whole_text(folder / "fact06.txt")  # the passage as stored: its vector is in the index
            return (await embedder.embed([owls]))[0], await embedder.embed_query("which animal hunts at night")
        finally:
            await embedder.close()

    exact, question = asyncio.run(index_and_ask())
    collection = index.collection("facts")
    assert collection.embed_model == model.id and collection.dimensions == len(exact) == 576
    assert index._one("SELECT COUNT(*) FROM vectors_576")[0] == collection.passages == len(facts)

    nearest = index.search_vectors(exact, collections=["facts"], limit=3)
    assert nearest[0].name == "fact06.txt" and nearest[0].score == pytest.approx(1.0, abs=1e-3)
    found = index.search("which animal hunts at night", vector=question, model=model.id)
    assert found.mode == "hybrid" and not found.note
    assert found.passages[0].name == "fact06.txt"  # BM25 and the vectors agree on it
    assert found.passages[0].score > found.passages[1].score
    # A vector from another model (other dimensions) falls back to keywords, and says so.
    other = index.search("owls", vector=[1.0, 0.0, 0.0])
    assert other.mode == "keywords" and "vectors" in other.note
    # Removing the collection takes its vectors too.
    index.remove("facts")
    assert index._one("SELECT COUNT(*) FROM vectors_576")[0] == 0


def test_an_embedding_model_installed_later_gives_the_collection_vectors_on_the_next_run(index, notes, services,
                                                                                        tmp_path):
    from desktop.core.docs.embedder import find_embedder
    from tests.gguf_forge import forge_bert

    index.add([notes])
    assert find_embedder(services) is None  # nothing installed: keywords alone
    run(Indexer(index))
    assert index.collection("default").embed_model == ""

    record = services.library.import_file(forge_bert(tmp_path / "forged-bert-embedding.gguf"), link=True)
    embedder = find_embedder(services)
    assert embedder is not None and embedder.model_id == record.id

    async def index_and_ask():
        try:
            result = await Indexer(index, embedder).run()
            return result, await embedder.embed_query("the tax is due")
        finally:
            await embedder.close()

    result, vector = asyncio.run(index_and_ask())
    assert result.indexed == 4  # read again, now with vectors
    collection = index.collection("default")
    assert (collection.embed_model, collection.dimensions) == (record.id, 32)
    found = index.search("quarterly tax", vector=vector, model=record.id)
    assert found.mode == "hybrid" and found.passages[0].name == "taxes.txt"
    assert index._one("SELECT COUNT(*) FROM vectors_32")[0] == collection.passages


def test_in_a_large_index_words_in_most_passages_are_left_out_of_the_search_but_rare_ones_find_their_file(
        index, tmp_path, monkeypatch):
    from desktop.core.docs import index as index_module

    monkeypatch.setattr(index_module, "COMMON_MIN", 3)  # "large" from 3 passages, so the test stays small
    folder = tmp_path / "log"
    folder.mkdir()
    for i in range(12):
        (folder / f"day{i:02}.txt").write_text(f"Lantern log, day {i}: the lantern was lit at dusk.\n")
    (folder / "day12.txt").write_text("Lantern log, day 12: caraway seeds were bought.\n")
    index.add([folder])
    run(Indexer(index))

    assert index._searched_words("lantern caraway") == ["caraway"]  # in 13 of 13 passages: left out
    assert index._searched_words("lantern log") == ["lantern"]  # all common: only the rarest (a tie: the first)
    assert index.search("lantern caraway").passages[0].name == "day12.txt"
    assert len(index.search("lantern", limit=20).passages) == 13  # one word alone is always searched


def test_a_chats_own_collection_is_searched_when_named_but_never_as_all(index, notes, tmp_path):
    attached = tmp_path / "attached"
    attached.mkdir()
    (attached / "contract.txt").write_text("The tenant pays the caraway merchant on Fridays.\n")
    index.add([notes], "home")
    index.add([attached], ".chat-7")  # context.chat_collection(7)
    run(Indexer(index))

    assert [c.name for c in index.collections()] == [".chat-7", "home"]  # the page and the CLI leave it out
    assert not index.search("caraway merchant").passages  # "all" is the user's collections
    assert index.search("caraway merchant", collections=[".chat-7"]).passages[0].name == "contract.txt"
    assert index.collection(".chat-7").files == 1


def test_a_huge_file_is_indexed_in_parts_and_never_held_whole(index, tmp_path):
    """A log far larger than memory would hold as passages is stored a batch at a time: the
    memory the indexing takes stays a small fraction of the file, and every passage is there."""
    import tracemalloc

    big = tmp_path / "huge.log"
    line = "2026-11-30 06:00:00 INFO the harbour crane moved container {n} to berth seven\n"
    with open(big, "w", encoding="utf-8") as out:
        for n in range(300_000):
            out.write(line.format(n=n))
            if n % 12 == 11:
                out.write("\n")  # a paragraph every 12 lines
        out.write("The last line names the zebra-striped buoy.\n")
    size = big.stat().st_size
    index.add([big], "logs")
    tracemalloc.start()
    try:
        result = run(Indexer(index, stream_bytes=1 * 2**20), "logs")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.indexed == 1 and result.failed == 0
    [entry] = index.files("logs")
    assert entry.state == "done" and entry.passages == result.passages > 1000
    # Held whole, its passages took 1.6 times the file (18 MB for 11.5 MB); in parts, ~7 MB whatever its size.
    assert size > 20 * 2**20 and peak < 12 * 2**20, f"indexing took {peak / 2**20:.1f} MB for a {size / 2**20:.1f} MB file"
    assert index.search("zebra-striped buoy", collections=["logs"]).passages[0].path == str(big)
    # Read again after a change: the old passages go first, nothing is kept twice.
    with open(big, "a", encoding="utf-8") as out:
        out.write("\nOne more line about the zebra-striped buoy.\n")
    run(Indexer(index, stream_bytes=1 * 2**20), "logs")
    [again] = index.files("logs")
    assert again.passages in (entry.passages, entry.passages + 1)


def test_another_writer_gets_a_sentence_and_removing_gives_the_space_back(tmp_path, notes):
    import apsw

    from desktop.core.docs.index import IndexUnavailable

    path = tmp_path / "data" / "documents.db"
    index = DocumentIndex(path, busy_timeout_ms=300)
    try:
        big = tmp_path / "big"
        big.mkdir()
        for i in range(40):
            (big / f"log{i:02}.txt").write_text(f"Shipment {i} left berth {i % 7}.\n\n" * 400)
        index.add([big], "big")
        run(Indexer(index), "big")
        def on_disk() -> int:  # the database and its write-ahead log
            return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))

        full = on_disk()
        other = apsw.Connection(str(path))  # another `hearth docs` in the middle of its write
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(IndexUnavailable, match="is writing the documents database"):
            index.add([notes], "notes")
        other.execute("ROLLBACK")
        other.close()
        index.remove("big")
        assert on_disk() < full / 4  # the pages of the removed collection went back to the disk
    finally:
        index.close()


def test_a_file_deleted_since_it_was_indexed_is_never_a_source(index, notes):
    index.add([notes])
    run(Indexer(index))
    [first] = index.search("quarterly tax return").passages[:1]
    os.remove(first.path)
    assert all(p.path != first.path for p in index.search("quarterly tax return").passages)
    assert first.path not in [f.path for f in index.files()]  # and it has left the index
