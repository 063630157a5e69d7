"""Document search: how often the right page is found, how fast files are indexed, and how long a
search takes in a large index.

(a) Retrieval: three ten-page books and 25 questions written for Hearth from public-domain facts
    (tests/bench/data/docs_eval.json; each question names the page holding its answer), as real
    PDFs through extract, chunk, the Indexer and DocumentIndex.search. Recall@5 (the answer's page
    among the first five passages) and recall@1, for BM25 alone, vectors alone and hybrid (rank
    fusion). Vectors come from the SmolLM2 starter in llama.cpp's embedding mode (last-token
    pooling of a 135M chat model: a weak embedder, shown as it is; an embedding model such as
    nomic-embed-text is what a user should install).
(b) Indexing speed: a 300-page PDF and 300 Markdown notes, keywords only (pages/s, passages/s),
    and the eval books with SmolLM2 vectors (passages/s), on this machine's cores.
(c) Query latency at 100,000 passages (synthetic text, about 1,000 characters each from a
    Zipf-distributed vocabulary, and random unit vectors of 384 numbers, bge-small's size): BM25
    and hybrid (BM25 top 50 + vec0 top 50 + fusion), p50 and p95 of 200 queries. Target p95 <= 50 ms.

Usage: python tests/bench/docs.py [--quick] [--passages N] [--queries N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import machine_line, percentile, row, save  # noqa: E402
from tests.bench.stream import starter_model  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "docs_eval.json"
TARGET_MS = 50.0
DIMS = 384


def recall(ranked: list[tuple[str, int | None]], book: str, page: int, k: int) -> bool:
    return (book, page) in ranked[:k]


def evaluate(index, questions, vectors) -> dict[str, dict[str, float]]:
    """Recall@1 and @5 for each way of searching."""
    hits = {mode: {"r1": 0, "r5": 0} for mode in ("bm25", "vectors", "hybrid")}
    for q, vector in zip(questions, vectors, strict=True):
        ranked = {
            "bm25": index.search(q["q"], limit=5).passages,
            "vectors": index.search_vectors(vector, limit=5) if vector is not None else (),
            "hybrid": index.search(q["q"], limit=5, vector=vector).passages if vector is not None else (),
        }
        for mode, passages in ranked.items():
            pairs = [(p.name, p.page) for p in passages]
            hits[mode]["r1"] += recall(pairs, q["book"], q["page"], 1)
            hits[mode]["r5"] += recall(pairs, q["book"], q["page"], 5)
    return {mode: {k: v / len(questions) for k, v in h.items()} for mode, h in hits.items()}


def vocabulary(size: int, rng) -> list[str]:
    """`size` made-up words, the most frequent ranks being English stop words, as in real text
    (the index leaves those out of a query, as it would in English)."""
    from desktop.core.docs.index import STOP_WORDS

    made = _made_up(size - len(STOP_WORDS), rng)
    return sorted(STOP_WORDS) + made


def _made_up(size: int, rng) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "si", "po", "de", "fa", "gu", "hi", "jo", "be", "vo", "wa",
                 "ze", "chi", "sto", "pra", "len", "dor", "mas", "tin", "gal", "ber", "nor", "sul"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables, size=int(rng.integers(2, 5)))))
    ordered = sorted(words)  # then shuffled: a word's rank has nothing to do with its letters
    return [ordered[i] for i in rng.permutation(len(ordered))]


def synthetic_index(path: Path, passages: int, rng):
    """An index of `passages` synthetic passages (100 per file) with random unit vectors."""
    import numpy as np

    from desktop.core.docs import Draft
    from desktop.core.docs.index import DocumentIndex

    index = DocumentIndex(path)
    words = np.array(vocabulary(20_000, rng))  # by rank: Zipf's law picks the first ones most
    index._write("INSERT INTO collections (name, created_at) VALUES ('big', 0)")
    per_file = 100
    started = time.perf_counter()
    for f in range(passages // per_file):
        index._write("INSERT INTO files (collection, path) VALUES ('big', ?)", (f"/synthetic/file{f:05}.txt",))
        file_id = index._one("SELECT last_insert_rowid()")[0]
        ranks = np.minimum(rng.zipf(1.2, size=(per_file, 150)), len(words)) - 1
        drafts = [Draft(" ".join(words[r]), None, "", i) for i, r in enumerate(ranks)]
        vectors = rng.standard_normal((per_file, DIMS)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index.store(file_id, drafts, pages=0, size=0, mtime=0, vectors=vectors.tolist(), model="synthetic")
    return index, words, time.perf_counter() - started


def latency(index, words, queries: int, rng) -> dict[str, list[float]]:
    import numpy as np

    times: dict[str, list[float]] = {"bm25": [], "hybrid": [], "bm25_cpu": [], "hybrid_cpu": []}
    for _ in range(queries):
        # Questions mix common and rarer words: 4 words, ranks drawn from the same Zipf law.
        query = " ".join(words[min(int(rng.zipf(1.2)), len(words)) - 1] for _ in range(4))
        vector = rng.standard_normal(DIMS).astype("float32")
        vector /= np.linalg.norm(vector)
        for mode, given in (("bm25", None), ("hybrid", vector.tolist())):
            # Wall time, and the CPU time of this process (every thread: the vector search runs
            # beside BM25): what the search costs on idle cores (the wall time also holds the
            # waits for a core on a busy machine).
            started, cpu = time.perf_counter(), time.process_time()
            index.search(query, limit=8, vector=given)
            times[f"{mode}_cpu"].append((time.process_time() - cpu) * 1000)
            times[mode].append((time.perf_counter() - started) * 1000)
    return times


def report_latency(index, words, args, rng) -> dict[str, tuple[float, float]]:
    """p50 and p95 of each kind of search (ms), printed; the index is closed after."""
    latency(index, words, 5, rng)  # warm the page cache
    times = latency(index, words, args.queries, rng)
    index.close()
    figures = {mode: (percentile(t, 50), percentile(t, 95)) for mode, t in times.items()}
    for mode, (p50, p95) in figures.items():
        print(f"{mode} at {args.passages} passages: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(f"load average: {os.getloadavg()}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency-only", action="store_true", help="only (c), print its figures, save nothing")
    args = parser.parse_args()
    if args.quick:
        args.passages, args.queries = 5_000, 20
    home = Path(tempfile.mkdtemp(prefix="hearth-bench-docs-"))
    os.environ["HEARTH_HOME"] = str(home)
    import numpy as np
    import psutil

    from desktop.core.docs.embedder import Embedder
    from desktop.core.docs.index import DocumentIndex
    from desktop.core.docs.indexer import Indexer
    from desktop.core.services import open_services
    from desktop.core.settings import LoadOptions
    from tests.pdf_forge import write_pdf

    print(machine_line())
    if args.latency_only:
        big_index, words, _ = synthetic_index(home / "big.db", args.passages, np.random.default_rng(18))
        report_latency(big_index, words, args, np.random.default_rng(19))
        return 0
    threads = psutil.cpu_count(logical=False) or 1
    data = json.loads(DATA.read_text(encoding="utf-8"))
    books = home / "books"
    books.mkdir()
    chosen = list(data["books"])[:1] if args.quick else list(data["books"])  # quick: 3 pages, their questions
    pages_of = {name: data["books"][name][:3] if args.quick else data["books"][name] for name in chosen}
    for name, pages in pages_of.items():
        write_pdf(books / name, pages)
    questions = [q for q in data["questions"] if q["book"] in chosen and q["page"] <= len(pages_of[q["book"]])]

    services = open_services()
    services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=threads))
    model = services.library.import_file(starter_model(), link=True)

    # (b) indexing speed, keywords only: a 300-page PDF and 300 notes.
    big = home / "big"
    big.mkdir()
    all_pages = [p for pages in data["books"].values() for p in pages]
    write_pdf(big / "long.pdf", [all_pages[i % len(all_pages)] + f" (copy {i})" for i in range(300)])
    for i in range(300 if not args.quick else 30):
        (big / f"note{i:03}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(all_pages[(i + j) % len(all_pages)]
                                                                            for j in range(3)) + "\n")
    plain = DocumentIndex(home / "plain.db")
    plain.add([big])
    speed = asyncio.run(Indexer(plain).run())
    print(f"keywords only: {speed.pages} pages and {speed.passages} passages in {speed.seconds:.2f} s")
    plain.close()

    # (a) retrieval, and indexing speed with vectors.
    index = DocumentIndex(home / "eval.db")
    index.add([books])
    embedder = Embedder(services, model)

    async def with_vectors():
        try:
            await embedder.ensure()  # the model's load, outside the timing
            result = await Indexer(index, embedder).run()
            vectors = [await embedder.embed_query(q["q"]) for q in questions]
            return result, vectors
        finally:
            await embedder.close()

    vector_speed, vectors = asyncio.run(with_vectors())
    print(f"with SmolLM2 vectors: {vector_speed.passages} passages in {vector_speed.seconds:.2f} s")
    scores = evaluate(index, questions, vectors)
    for mode, s in scores.items():
        print(f"{mode}: recall@1 {s['r1']:.2f}, recall@5 {s['r5']:.2f}")
    index.close()
    services.close()

    # (c) latency in a large index.
    big_index, words, build_s = synthetic_index(home / "big.db", args.passages, np.random.default_rng(18))
    print(f"{args.passages} synthetic passages stored in {build_s:.1f} s")
    figures = report_latency(big_index, words, args, np.random.default_rng(19))
    size_mb = (home / "big.db").stat().st_size / 1e6

    n = args.passages
    rows = [
        row("Recall@5, BM25 alone (25 questions, 30 pages)", scores["bm25"]["r5"], digits=2),
        row("Recall@5, SmolLM2 vectors alone (weak: a chat model)", scores["vectors"]["r5"], digits=2),
        row("Recall@5, hybrid (rank fusion)", scores["hybrid"]["r5"], digits=2),
        row("Recall@1, BM25 alone", scores["bm25"]["r1"], digits=2),
        row("Recall@1, SmolLM2 vectors alone", scores["vectors"]["r1"], digits=2),
        row("Recall@1, hybrid", scores["hybrid"]["r1"], digits=2),
        row("Indexing, keywords only, pages/s (300-page PDF)", speed.pages / speed.seconds, digits=0),
        row("Indexing, keywords only, passages/s", speed.passages / speed.seconds, digits=0),
        row("Indexing with SmolLM2 vectors, passages/s", vector_speed.passages / vector_speed.seconds, digits=1),
        row(f"Search p95 at {n:,} passages, BM25, ms", figures["bm25"][1], target=f"<= {TARGET_MS:.0f} ms",
            met=figures["bm25"][1] <= TARGET_MS),
        row(f"Search p95 at {n:,} passages, hybrid ({DIMS}-number vectors), ms", figures["hybrid"][1],
            target=f"<= {TARGET_MS:.0f} ms", met=figures["hybrid"][1] <= TARGET_MS),
        row(f"Search p95 at {n:,} passages, BM25, CPU time of the search, ms", figures["bm25_cpu"][1]),
        row(f"Search p95 at {n:,} passages, hybrid, CPU time of the search, ms", figures["hybrid_cpu"][1]),
    ]
    save("docs", {
        "threads": threads, "questions": len(questions), "pages": len(all_pages),
        "recall": {m: {k: round(v, 3) for k, v in s.items()} for m, s in scores.items()},
        "indexing_keywords": {"pages": speed.pages, "passages": speed.passages, "seconds": round(speed.seconds, 3)},
        "indexing_vectors": {"passages": vector_speed.passages, "seconds": round(vector_speed.seconds, 3)},
        "latency_ms": {m: {"p50": round(a, 2), "p95": round(b, 2)} for m, (a, b) in figures.items()},
        # wall and CPU times of the same searches ("_cpu": this thread's CPU time)
        "passages": n, "build_s": round(build_s, 1), "database_mb": round(size_mb, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }, rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
