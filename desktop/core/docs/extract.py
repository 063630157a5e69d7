"""Reading a file into Sections of text in reading order: PDF (pypdfium2), Word .docx
(python-docx), web pages (lxml's HTML parser, fed as it is read) and text in any
encoding (charset-normalizer), streamed so that a 2 GB log is never held whole in memory."""

from __future__ import annotations

import codecs
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

from desktop.core.docs import DocumentError, Section

PDF = frozenset({".pdf"})
DOCX = frozenset({".docx"})
HTML = frozenset({".html", ".htm", ".xhtml"})
MARKDOWN = frozenset({".md", ".markdown"})
TEXT = frozenset({
    ".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex", ".csv", ".tsv", ".json",
    ".jsonl", ".log", ".srt", ".vtt",
    # source code and configuration
    ".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".java", ".kt", ".kts",
    ".scala", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".go", ".rs", ".rb", ".php",
    ".pl", ".pm", ".lua", ".r", ".swift", ".m", ".mm", ".dart", ".hs", ".ml", ".ex", ".exs", ".erl",
    ".clj", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".sql", ".css", ".scss",
    ".less", ".vue", ".svelte", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".properties",
    ".env", ".xml", ".svg", ".gradle", ".cmake", ".mk", ".dockerfile", ".proto", ".graphql",
})
KINDS: frozenset[str] = PDF | DOCX | HTML | TEXT
"""The file suffixes `sections` reads, lower case with the dot (compare with `Path.suffix.lower()`)."""

READS = "PDF, Word (.docx), web pages (.html), text, Markdown, CSV, JSON, logs and source code"

BLOCK = 1 << 20  # text is decoded and handed on in pieces of about this many bytes
SNIFF = 64 << 10  # the first bytes charset-normalizer looks at to name a text file's encoding
DOCX_LIMIT = 512 << 20  # uncompressed size of a .docx's parts: beyond this it is a zip bomb, not a text

# PDFium is not thread-safe, even across documents (pypdfium2's documentation): every call into it
# holds this lock, so an indexer thread and a chat attaching a file can both read PDFs.
_PDFIUM = threading.Lock()


class PasswordRequired(DocumentError):
    """The PDF is encrypted and no password (or a wrong one) was given: the window asks for it."""


def sections(path: str | Path, *, password: str | None = None) -> Iterator[Section]:
    """The text of the file at `path` in reading order, as Sections:

    - PDF: one Section per page with text (`page` from 1; pages without text are left out);
      `password` opens an encrypted one.
    - DOCX: a Section per heading (paragraphs of the Heading 1…9 and Title styles start one, and
      are its first paragraph; `heading` is their text), tables' cells included, row by row.
    - HTML: the visible text (no script, style, template or noscript), a Section per h1…h6.
    - Text (any suffix in TEXT): decoded in the encoding charset-normalizer names from the first
      64 KB, then streamed in pieces of about 1 MB cut at line ends; in Markdown, `#` headings
      (outside code fences) start a Section. Bytes that are not valid in that encoding become
      U+FFFD rather than stopping the file.

    Paragraphs within a Section are separated by a blank line. The file is only read: nothing it
    names (links, external entities, fonts) is opened.

    Raises DocumentError with a sentence naming the file, before the first Section or while
    reading: an unknown suffix, a file that cannot be opened, a damaged PDF or DOCX, a binary file
    named as text, a PDF with no text layer (a scan); PasswordRequired (a
    DocumentError) for an encrypted PDF without its password.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PDF:
        return _pdf(path, password)
    if suffix in DOCX:
        return _docx(path)
    if suffix in HTML:
        return _html(path)
    if suffix in TEXT:
        return _text(path, markdown=suffix in MARKDOWN)
    if not suffix:
        raise DocumentError(f"Hearth cannot read “{path.name}”: its name has no type such as .pdf or .txt "
                            f"(it reads: {READS}).")
    raise DocumentError(f"Hearth cannot read {suffix} files yet (it reads: {READS}).")


def _unreadable(path: Path, error: OSError) -> DocumentError:
    reason = error.strerror or str(error)
    return DocumentError(f"“{path.name}” could not be read: {reason[:1].lower() + reason[1:]}.")


# PDF ------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\uffff]")


def _pdf_text(raw: str) -> str:
    # PDFium ends lines with \r\n, and puts U+FFFE for a hyphen at a line's end together with that
    # line break ("exam-" / "ple" -> "exam\ufffeple"): the word is joined again ("example"), as PDF
    # viewers' search does, so keyword search finds it.
    raw = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "").replace("\x0c", "\n\n")
    return _CONTROL.sub("", raw)


def _pdf(path: Path, password: str | None) -> Iterator[Section]:
    import pypdfium2 as pdfium

    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as e:
        raise _unreadable(path, e) from None
    with _PDFIUM:
        try:
            doc = pdfium.PdfDocument(path, password=password)
        except pdfium.PdfiumError as e:
            if e.err_code == 4:  # FPDF_ERR_PASSWORD
                if password:
                    raise PasswordRequired(f"The password for “{path.name}” is not right.") from None
                raise PasswordRequired(f"“{path.name}” is locked with a password; "
                                       "give its password to read it.") from None
            if size == 0:
                raise DocumentError(f"“{path.name}” is empty.") from None
            raise DocumentError(f"“{path.name}” is damaged or is not a PDF; it could not be opened.") from None
        count = len(doc)
    return _pdf_pages(path, doc, count)


def _pdf_pages(path: Path, doc, count: int) -> Iterator[Section]:
    import pypdfium2 as pdfium

    found = False
    try:
        for index in range(count):
            with _PDFIUM:
                try:
                    page = doc[index]
                    textpage = page.get_textpage()
                    raw = textpage.get_text_range()  # all of it; get_text_bounded cuts at the page box
                    textpage.close()
                    page.close()
                except pdfium.PdfiumError:
                    raise DocumentError(f"“{path.name}” is damaged: page {index + 1} could not be read.") from None
            text = _pdf_text(raw)
            if text.strip():
                found = True
                yield Section(text, page=index + 1)
    finally:
        with _PDFIUM:
            doc.close()
    if not found:
        raise DocumentError(f"No text found in “{path.name}”; it may be a scanned image "
                            "(Hearth does not read text in images).")


# DOCX -----------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"(heading \d|title)$", re.IGNORECASE)


def _docx(path: Path) -> Iterator[Section]:
    import docx
    from docx.table import Table

    damaged = DocumentError(f"“{path.name}” is damaged or is not a Word document (.docx); "
                            "it could not be opened.")
    try:
        with zipfile.ZipFile(path) as z:
            if sum(i.file_size for i in z.infolist()) > DOCX_LIMIT:
                raise DocumentError(f"“{path.name}” unpacks to more than {DOCX_LIMIT >> 20} MB; "
                                    "Hearth does not read it (it may be a zip bomb).")
        # python-docx parses with resolve_entities=False (no external or nested entities) and lxml
        # never loads a DTD or anything over the network.
        document = docx.Document(str(path))
    except DocumentError:
        raise
    except OSError as e:
        if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError):
            raise _unreadable(path, e) from None
        raise damaged from None
    except Exception:  # BadZipFile, PackageNotFoundError, KeyError (a missing part), XMLSyntaxError
        raise damaged from None

    def blocks() -> Iterator[tuple[str, bool]]:
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    seen: list[int] = []
                    cells = []
                    for cell in row.cells:  # a merged cell comes once per column it spans
                        if id(cell._tc) in seen:
                            continue
                        seen.append(id(cell._tc))
                        text = " ".join(cell.text.split())
                        if text:
                            cells.append(text)
                    if cells:
                        yield " | ".join(cells), False
            else:
                style = item.style.name if item.style is not None else ""
                yield item.text, bool(_HEADING_STYLE.match(style or ""))

    def read() -> Iterator[Section]:
        heading, paragraphs, size = "", [], 0
        try:
            for text, is_heading in blocks():
                text = text.strip()
                if not text:
                    continue
                if (is_heading or size > BLOCK) and paragraphs:
                    yield Section("\n\n".join(paragraphs), heading=heading)
                    paragraphs, size = [], 0
                if is_heading:
                    heading = " ".join(text.split())
                paragraphs.append(text)
                size += len(text)
        except DocumentError:
            raise
        except Exception:
            raise damaged from None
        if paragraphs:
            yield Section("\n\n".join(paragraphs), heading=heading)

    return read()


# HTML -----------------------------------------------------------------------------------------

# Elements whose text a reader does not see (the title is kept as the page's first heading).
_SKIP = frozenset({"script", "style", "noscript", "template", "title", "svg", "math", "iframe", "object",
                   "select", "datalist"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "nav", "ol",
    "p", "pre", "section", "summary", "table", "tr", "ul", "caption", "thead", "tbody", "tfoot",
})
_SPACES = re.compile(r"\s+")
_HTML_DEPTH = 2048  # libxml2's deepest nesting with huge_tree (xmlParserMaxDepth; seen with libxml2 2.14)


_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]{1,40})""", re.IGNORECASE)


def _html_encoding(head: bytes, *, complete: bool) -> str | None:
    """A web page's encoding: its byte order mark, else its <meta charset> (or http-equiv
    Content-Type) in the first 4 KB, else what charset-normalizer finds; None: not text. As
    browsers do (WHATWG Encoding), "iso-8859-1" and "ascii" mean Windows-1252, and a UTF-16 label
    in a page without a UTF-16 byte order mark means UTF-8."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        return None
    found = _META_CHARSET.search(head[:4096])
    if found:
        try:
            name = codecs.lookup(found.group(1).decode("ascii")).name
        except LookupError:
            name = ""
        if name in ("latin-1", "iso8859-1", "ascii"):
            return "cp1252"
        if name.startswith("utf-16") or name.startswith("utf-32"):
            return "utf-8"
        if name:
            return name
    return text_encoding(head, complete=complete)


def _html(path: Path) -> Iterator[Section]:
    try:
        f = path.open("rb")
    except OSError as e:
        raise _unreadable(path, e) from None
    try:
        head = f.read(SNIFF)
    except OSError as e:
        f.close()
        raise _unreadable(path, e) from None
    encoding = _html_encoding(head, complete=len(head) < SNIFF)
    if encoding is None:
        f.close()
        raise DocumentError(f"“{path.name}” is not a web page (it looks like a binary file).")
    return _html_sections(path, f, head, encoding)


def _html_sections(path: Path, f, head: bytes, encoding: str) -> Iterator[Section]:
    """The visible text of a web page, parsed as it is read (lxml's HTMLPullParser: libxml2's
    forgiving HTML parser, fed 1 MB of decoded text at a time; it loads no DTD, fetches nothing,
    and expands only HTML's own named character references). Elements already read are removed
    from the tree, so memory stays about one piece whatever the page's size.

    Text is emitted when it is complete: an element's leading text when its first child starts
    (or when it ends, if it has none), a child's tail when the next sibling starts or the parent
    ends."""
    from lxml import etree

    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    # huge_tree: libxml2 otherwise drops, without a word, whatever is nested deeper than 256
    # elements (pages of unclosed <font> or <div> tags) and text nodes over 10 MB.
    parser = etree.HTMLPullParser(events=("start", "end", "comment", "pi"), no_network=True,
                                  remove_blank_text=False, huge_tree=True)
    title, heading, parts, size = "", "", [], 0
    heading_from: int | None = None  # where in parts the open heading's text starts
    skipping = 0  # open elements whose text is not shown (script, style…)
    depth = 0

    def emit(text: str | None) -> None:
        nonlocal size
        if text and not skipping:
            parts.append(_SPACES.sub(" ", text))  # a line break in the source is a space
            size += len(text)

    def section() -> Section | None:
        nonlocal parts, size
        text = _paragraphs("".join(parts))
        parts, size = [], 0
        return Section(text, heading=heading or title) if text else None

    def events() -> Iterator[Section]:
        nonlocal title, heading, heading_from, skipping, depth
        for event, element in parser.read_events():
            tag = element.tag if isinstance(element.tag, str) else ""
            if event == "end":
                depth -= 1
                if len(element):
                    emit(element[-1].tail)
                else:
                    emit(element.text)
                if tag in _SKIP:
                    skipping -= 1
                    if tag == "title" and not title:
                        title = " ".join((element.text or "").split())
                elif tag in _HEADINGS and heading_from is not None:
                    heading = " ".join("".join(parts[heading_from:]).split())
                    heading_from = None
                    parts.append("\n\n")
                elif tag in _BLOCKS:
                    parts.append("\n\n")
                    if size > BLOCK and heading_from is None:
                        done = section()
                        if done:
                            yield done
                element.clear(keep_tail=True)  # its children are read: free them
                continue
            # start, comment or processing instruction: the text before it is complete
            previous = element.getprevious()
            parent = element.getparent()
            emit(previous.tail if previous is not None else parent.text if parent is not None else None)
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
            if event != "start":
                continue
            depth += 1
            if depth > _HTML_DEPTH:  # libxml2 drops the rest of the page without a word
                raise DocumentError(f"“{path.name}” nests its elements more than {_HTML_DEPTH:,} deep; "
                                    "Hearth cannot read past that point.")
            if tag in _SKIP:
                skipping += 1
            elif tag in _HEADINGS and not skipping:
                done = section()
                if done:
                    yield done
                heading_from = 0
            elif tag == "br":
                parts.append("\n")
            elif tag in ("td", "th"):
                parts.append(" ")
            elif tag in _BLOCKS:
                parts.append("\n\n")

    data = head
    try:
        with f:
            while True:
                more = _read(path, f)
                text = decoder.decode(data, final=not more)
                if text:
                    parser.feed(text.replace("\x00", ""))
                if not more:
                    parser.close()
                yield from events()
                if not more:
                    break
                data = more
    except etree.Error:
        raise DocumentError(f"“{path.name}” could not be read as a web page.") from None
    last = section()
    if last:
        yield last


def _paragraphs(text: str) -> str:
    """Whitespace inside a paragraph of a web page is one space; paragraphs are separated by a
    blank line (single line breaks from <br> are kept)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [_SPACES.sub(" ", line).strip() for line in block.split("\n")]
        joined = "\n".join(line for line in lines if line)
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)


# Text -----------------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf_32"), (codecs.BOM_UTF32_BE, "utf_32"),  # before UTF-16: same start
    (codecs.BOM_UTF8, "utf_8_sig"), (codecs.BOM_UTF16_LE, "utf_16"), (codecs.BOM_UTF16_BE, "utf_16"),
)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")


def text_encoding(head: bytes, *, complete: bool) -> str | None:
    """The Python codec name of text starting with the bytes `head` (a BOM, else what
    charset-normalizer finds most likely), or None when it is not text: NUL bytes outside UTF-16/32,
    or no encoding decodes it. `complete`: `head` is the whole file (otherwise it is cut at its last
    line end first, so a character split at the cut does not rule out the right encoding). ASCII is
    named UTF-8, its superset, as later bytes may not be ASCII."""
    from charset_normalizer import from_bytes

    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        return None
    if not head:
        return "utf_8"
    if not complete:
        cut = head.rfind(b"\n")
        if cut > 0:
            head = head[:cut + 1]
    results = from_bytes(head)
    best = results.best()
    if best is None:
        return None
    name = best.encoding
    # On a short sample charset-normalizer often names a Baltic or Central European code page for
    # French, German or Spanish (cp1257 for "déjà vu"): among guesses about as plausible as its
    # best, Windows-1252, by far the most common legacy encoding (and the web's default for
    # "latin1"), wins. Czech, Polish, Russian and Greek samples keep their own code pages.
    for match in results:
        if match.chaos <= best.chaos + 0.05 and "cp1252" in match.could_be_from_charset:
            name = "cp1252"
            break
    name = codecs.lookup(name).name
    return "utf_8" if name in ("ascii", "utf-8") else name


def _text(path: Path, *, markdown: bool) -> Iterator[Section]:
    try:
        f = path.open("rb")
    except OSError as e:
        raise _unreadable(path, e) from None
    try:
        head = f.read(SNIFF)
        complete = len(head) < SNIFF
        encoding = text_encoding(head, complete=complete)
    except OSError as e:
        f.close()
        raise _unreadable(path, e) from None
    if encoding is None:
        f.close()
        raise DocumentError(f"“{path.name}” is not text (it looks like a binary file).")
    return _text_pieces(path, f, head, encoding, markdown)


def _text_pieces(path: Path, f, head: bytes, encoding: str, markdown: bool) -> Iterator[Section]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    heading, fenced = "", False
    carry = ""  # the end of the last piece after its last line break: the start of a line
    data = head
    with f:
        while True:
            more = _read(path, f)  # read ahead: the decoder must know which piece is the last
            final = not more
            text = carry + decoder.decode(data, final=final)
            if "\x00" in text:  # a log with a run of NULs past its start (a crash, a preallocated file)
                text = text.replace("\x00", "")
            if not final:
                # Cut at the last blank line (a paragraph's end) when there is one in the piece's
                # second half, else at the last line end: the next piece starts a line.
                blank = text.rfind("\n\n", len(text) // 2)
                cut = blank + 2 if blank >= 0 else text.rfind("\n") + 1
                if cut == 0 and len(text) < 8 * BLOCK:
                    carry, data = text, more  # a very long line: wait for its end, up to 8 MB
                    continue
                if cut == 0:
                    cut = len(text)
                text, carry = text[:cut], text[cut:]
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            if markdown:
                for section_text, section_heading in _markdown(text, heading, fenced):
                    if section_text is None:  # the state at the end of this piece
                        heading, fenced = section_heading
                        continue
                    if section_text.strip():
                        yield Section(section_text, heading=section_heading)
            elif text.strip():
                yield Section(text)
            if final:
                return
            data = more


def _read(path: Path, f) -> bytes:
    try:
        return f.read(BLOCK)
    except OSError as e:
        raise _unreadable(path, e) from None


def _markdown(text: str, heading: str, fenced: bool):
    """Splits a piece of Markdown at its ATX headings (`# Title`), outside code fences. Yields
    (text, heading) for each part, then (None, (heading, fenced)): the state the next piece
    starts in."""
    lines = text.split("\n")
    start = 0
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced or not line.lstrip(" ").startswith("#"):
            continue
        m = _ATX.match(line)
        if not m:
            continue
        if i > start:
            yield "\n".join(lines[start:i]), heading
        heading = (m.group(2) or "").strip()
        start = i
    if start < len(lines):
        yield "\n".join(lines[start:]), heading
    yield None, (heading, fenced)
