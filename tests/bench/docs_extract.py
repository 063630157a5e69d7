"""How fast documents are read and cut into passages (desktop/core/docs extract and chunk), on one
core: pages/s reading a forged 200-page PDF (pypdfium2; pypdf's figure beside it when installed, as
the alternative weighed), MB/s reading a 100 MB text file in pieces and a ~12 MB web page, and
passages/s cutting that text (and the PDF) into passages. Median of 3 runs each; files on this
disk, read from the page cache after the first run.

Usage: python tests/bench/docs_extract.py [--pages 200] [--text-mb 100] [--dir FOLDER]
Not part of `make bench` (yet): it prints its figures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from desktop.core.docs.chunk import passages  # noqa: E402
from desktop.core.docs.extract import sections  # noqa: E402
from tests.bench.common import machine_line  # noqa: E402
from tests.core.test_docs_extract import forge_pdf  # noqa: E402

WORDS = ("harbour ship quay lighthouse keeper tide storm cargo crane pilot anchor rope sail deck board "
         "report year income cost repair season weather north south morning evening light water stone "
         "the a of and to in was were is for with on by from at that it as this which").split()


def prose(rng: random.Random, chars: int) -> str:
    """Paragraphs of 2-8 sentences of 6-20 words, a blank line between them: text shaped like a
    report, about `chars` characters."""
    out, size = [], 0
    while size < chars:
        paragraph = " ".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))).capitalize() + "."
            for _ in range(rng.randint(2, 8)))
        out.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(out)


def median_of_3(run) -> tuple[float, object]:
    times, result = [], None
    for _ in range(3):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(pages: int, text_mb: int, folder: Path) -> None:
    print(machine_line())
    rng = random.Random(18)
    pdf = folder / "report.pdf"
    pdf.write_bytes(forge_pdf(["\n".join(prose(rng, 2400).replace("\n\n", "\n").split(". "))
                               for _ in range(pages)]))
    seconds, read = median_of_3(lambda: list(sections(pdf)))
    chars = sum(len(s.text) for s in read)
    print(f"PDF, pypdfium2: {pages / seconds:.0f} pages/s ({pages} pages, {chars / pages:.0f} characters "
          f"a page, {seconds * 1000:.0f} ms)")
    try:
        import pypdf
    except ImportError:
        pass
    else:
        seconds, _ = median_of_3(lambda: [p.extract_text() for p in pypdf.PdfReader(pdf).pages])
        print(f"PDF, pypdf {pypdf.__version__} (not used, for comparison): {pages / seconds:.0f} pages/s")
    seconds, drafts = median_of_3(lambda: list(passages(read)))
    print(f"passages from the PDF: {len(drafts) / seconds:,.0f} passages/s ({len(drafts)} passages)")

    text = folder / "book.txt"
    block = prose(rng, 1 << 20).encode("utf-8")
    with text.open("wb") as f:
        for _ in range(text_mb):
            f.write(block + b"\n\n")
    size = text.stat().st_size

    def read_text() -> int:
        return sum(len(s.text) for s in sections(text))

    seconds, _ = median_of_3(read_text)
    print(f"text: {size / 2**20 / seconds:.0f} MB/s ({size / 2**20:.0f} MB in {seconds:.2f} s)")
    page = folder / "page.html"
    with page.open("w", encoding="utf-8") as f:
        f.write("<html><head><title>Report</title><script>var x = 1;</script></head><body>")
        for i, paragraph in enumerate(prose(rng, 10 << 20).split("\n\n")):
            if i % 20 == 0:
                f.write(f"<h2>Part {i // 20}</h2>")
            f.write(f"<div class='para'><p>{paragraph.replace('harbour', '<b>harbour</b>')}</p></div>\n")
        f.write("</body></html>")
    html_size = page.stat().st_size
    seconds, _ = median_of_3(lambda: sum(len(s.text) for s in sections(page)))
    print(f"web page: {html_size / 2**20 / seconds:.1f} MB/s ({html_size / 2**20:.0f} MB of HTML in {seconds:.2f} s)")

    head = []
    for section in sections(text):  # 20 MB of it held in memory, so only the cutting is timed
        head.append(section)
        if len(head) >= 20:
            break
    seconds, drafts = median_of_3(lambda: list(passages(head)))
    cut = sum(len(s.text) for s in head)
    print(f"passages from text: {len(drafts) / seconds:,.0f} passages/s, {cut / 2**20 / seconds:.0f} MB/s "
          f"({len(drafts)} passages of {cut / len(drafts):.0f} characters on average)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--text-mb", type=int, default=100)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hearth-docs-", dir=args.dir) as folder:
        main(args.pages, args.text_mb, Path(folder))
