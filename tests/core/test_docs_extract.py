"""Reading documents into sections and passages (issue 18): PDFs, Word files, web pages and text in
any encoding, forged here from the formats' published structure, read as a user would see them;
bad files get the sentence the user reads."""

from __future__ import annotations

import codecs
import tracemalloc
import zipfile
from pathlib import Path

import docx
import pypdf
import pytest

from desktop.core.docs import DocumentError, Section
from desktop.core.docs.chunk import passages
from desktop.core.docs.extract import KINDS, PasswordRequired, sections

# A 1x1 grey image, as a scanner would leave (uncompressed DeviceGray samples).
_IMAGE = b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length 1 >>\nstream\n\x80\nendstream"


def forge_pdf(pages: list[str], *, scanned: bool = False) -> bytes:
    """A PDF (ISO 32000: catalog, page tree, Helvetica, a content stream per page, xref table)
    with each string of `pages` written as lines of text on its page; `scanned`: pages that only
    draw a rectangle and an image, with no text at all."""

    def literal(s: str) -> str:
        return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{5 + 2 * i} 0 R' for i in range(len(pages)))}] "
               f"/Count {len(pages)} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
               _IMAGE]
    for i, text in enumerate(pages):
        if scanned:
            content = b"0.6 g 72 72 300 500 re f q 400 0 0 600 100 100 cm /Im1 Do Q"
        else:
            lines = " ".join(f"{literal(line)} Tj T*" for line in text.split("\n"))
            content = f"BT /F1 11 Tf 14 TL 72 760 Td {lines} ET".encode("cp1252")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {6 + 2 * i} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


REPORT = [
    "Annual report of the Harbour Board\nThis year the harbour handled more ships than ever.",
    "Finances\nIncome rose by a tenth. Costs stayed the same.",
    "Lighthouse\nThe lighthouse keeper's cat is named Marmalade.\nShe has lived there since 2019.",
    "Outlook\nNext year the quay will be repaired.",
]


def error_of(path: Path, **kw) -> str:
    with pytest.raises(DocumentError) as caught:
        list(sections(path, **kw))
    return str(caught.value)


# PDF ------------------------------------------------------------------------------------------

def test_a_fact_only_on_page_3_of_a_pdf_is_found_on_page_3(tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(forge_pdf(REPORT))
    read = list(sections(pdf))
    assert [s.page for s in read] == [1, 2, 3, 4]
    assert "The lighthouse keeper's cat is named Marmalade." in read[2].text
    assert all("Marmalade" not in s.text for s in read if s.page != 3)
    drafts = list(passages(read))
    cat = [d for d in drafts if "Marmalade" in d.text]
    assert [d.page for d in cat] == [3]
    assert [d.ordinal for d in drafts] == list(range(len(drafts)))


def test_a_word_hyphenated_at_a_line_end_of_a_pdf_is_one_word_again(tmp_path):
    pdf = tmp_path / "hyphen.pdf"
    pdf.write_bytes(forge_pdf(["The harbour master wrote an exam-\nple of the rules."]))
    assert [s.text for s in sections(pdf)] == ["The harbour master wrote an example of the rules."]


def test_a_locked_pdf_says_so_and_opens_with_its_password(tmp_path):
    plain = tmp_path / "plain.pdf"
    plain.write_bytes(forge_pdf(REPORT))
    writer = pypdf.PdfWriter(clone_from=plain)
    writer.encrypt("harbour", algorithm="AES-256")
    locked = tmp_path / "minutes.pdf"
    writer.write(locked)

    with pytest.raises(PasswordRequired) as caught:
        list(sections(locked))
    assert str(caught.value) == "“minutes.pdf” is locked with a password; give its password to read it."
    assert error_of(locked, password="wrong") == "The password for “minutes.pdf” is not right."
    read = list(sections(locked, password="harbour"))
    assert [s.page for s in read] == [1, 2, 3, 4]
    assert "Marmalade" in read[2].text


def test_a_scanned_pdf_with_no_text_layer_says_no_text_was_found(tmp_path):
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(forge_pdf(["", "", ""], scanned=True))
    assert error_of(scan) == ("No text found in “scan.pdf”; it may be a scanned image "
                              "(Hearth does not read text in images).")


def test_a_damaged_or_empty_pdf_gets_a_sentence(tmp_path):
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    assert error_of(damaged) == "“damaged.pdf” is damaged or is not a PDF; it could not be opened."
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert error_of(empty) == "“empty.pdf” is empty."


def test_a_pdf_cut_short_is_read_without_its_last_line_and_refused_without_its_trailer(tmp_path):
    whole = forge_pdf(REPORT)
    no_eof = tmp_path / "no-eof.pdf"
    no_eof.write_bytes(whole[:-len(b"%%EOF\n")])
    assert [s.page for s in sections(no_eof)] == [1, 2, 3, 4]
    half = tmp_path / "half.pdf"
    half.write_bytes(whole[: len(whole) // 2])
    assert error_of(half) == "“half.pdf” is damaged or is not a PDF; it could not be opened."


# DOCX -----------------------------------------------------------------------------------------

def make_docx(path: Path) -> None:
    document = docx.Document()
    document.add_paragraph("Notes kept by the lab.")
    document.add_heading("Methods", level=1)
    document.add_paragraph("Water was heated in a kettle.")
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Liquid", "Boiling point"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = "Water", "100 °C"
    document.add_heading("Results", level=2)
    document.add_paragraph("The kettle boiled in four minutes.")
    document.save(str(path))


def test_a_word_file_is_read_in_order_under_its_headings_with_its_tables(tmp_path):
    path = tmp_path / "lab.docx"
    make_docx(path)
    read = list(sections(path))
    assert read == [
        Section("Notes kept by the lab."),
        Section("Methods\n\nWater was heated in a kettle.\n\nLiquid | Boiling point\n\nWater | 100 °C",
                heading="Methods"),
        Section("Results\n\nThe kettle boiled in four minutes.", heading="Results"),
    ]
    drafts = list(passages(read))
    assert [(d.heading, d.ordinal) for d in drafts] == [("", 0), ("Methods", 1), ("Results", 2)]


def test_a_damaged_word_file_gets_a_sentence(tmp_path):
    whole = tmp_path / "whole.docx"
    make_docx(whole)
    truncated = tmp_path / "truncated.docx"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    sentence = "“truncated.docx” is damaged or is not a Word document (.docx); it could not be opened."
    assert error_of(truncated) == sentence
    renamed = tmp_path / "letter.docx"
    renamed.write_text("Dear Sir, this is plain text.")
    assert error_of(renamed).startswith("“letter.docx” is damaged or is not a Word document")


def _rewrite_body(source: Path, target: Path, change) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "word/document.xml":
                body = data.decode().split("?>", 1)[1].lstrip()
                data = change(body).encode()
            zout.writestr(item, data)


def test_a_word_file_cannot_make_hearth_read_another_file_or_expand_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the neighbour's wifi password")
    plain = tmp_path / "plain.docx"
    document = docx.Document()
    document.add_paragraph("MARK")
    document.save(str(plain))

    xxe = tmp_path / "xxe.docx"
    _rewrite_body(plain, xxe, lambda body: (
        f'<?xml version="1.0"?>\n<!DOCTYPE w:document [<!ENTITY x SYSTEM "{secret.as_uri()}">]>\n'
        + body.replace("MARK", "MARK &x;")))
    text = "".join(s.text for s in sections(xxe))
    assert "MARK" in text and "password" not in text

    entities = '<!ENTITY a0 "ha">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    laughs = tmp_path / "laughs.docx"
    _rewrite_body(plain, laughs, lambda body: (
        f'<?xml version="1.0"?>\n<!DOCTYPE w:document [{entities}]>\n' + body.replace("MARK", "MARK &a9;")))
    # libxml2 refuses the billion laughs (entity amplification) rather than expanding them.
    assert "damaged" in error_of(laughs)


# Text -----------------------------------------------------------------------------------------

FRENCH = ("Café crème à la française : déjà vu, naïveté, garçon, façade, élève, Noël.\n"
          "Une deuxième ligne, très française, où l'été est brûlant.\n")
JAPANESE = "これは日本語の文章です。東京は日本の首都です。今日はいい天気ですね。\n吾輩は猫である。名前はまだ無い。\n"


@pytest.mark.parametrize("name, text, encoding", [
    ("latin1.txt", FRENCH, "latin-1"),
    ("utf16.txt", "Naïve résumé ✓ in UTF-16, with its byte order mark.\n", "utf-16"),
    ("shiftjis.txt", JAPANESE, "shift_jis"),
    ("utf8.csv", "city,population\nZürich,421878\nMünchen,1512491\n", "utf-8"),
])
def test_text_in_any_encoding_reads_as_written(tmp_path, name, text, encoding):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    assert "".join(s.text for s in sections(path)) == text


def test_a_binary_file_renamed_txt_is_not_text(tmp_path):
    fake = tmp_path / "photo.txt"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 40)
    assert error_of(fake) == "“photo.txt” is not text (it looks like a binary file)."


def test_markdown_headings_name_the_sections_but_not_comments_in_code(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("Intro line.\n\n# Setup\n\nInstall it.\n\n```sh\n# not a heading\nmake\n```\n\n"
                    "## Use ##\n\nRun it.\n", encoding="utf-8")
    read = list(sections(path))
    assert [s.heading for s in read] == ["", "Setup", "Use"]
    assert "# not a heading" in read[1].text
    drafts = list(passages(read))
    assert [(d.heading, d.text) for d in drafts] == [
        ("", "Intro line."), ("Setup", "# Setup\n\nInstall it.\n\n```sh\n# not a heading\nmake\n```"),
        ("Use", "## Use ##\n\nRun it.")]


def test_a_300_mb_log_is_streamed_never_read_whole(tmp_path):
    log = tmp_path / "server.log"
    line = b"2026-11-30T05:00:00Z INFO request served in 12 ms from 127.0.0.1 path=/v1/models\n"
    block = line * ((4 << 20) // len(line))
    with log.open("wb") as f:
        while f.tell() < 300 << 20:
            f.write(block)
    size = log.stat().st_size
    tracemalloc.start()
    try:
        chars = pieces = 0
        for section in sections(log):
            chars += len(section.text)
            pieces += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chars == size  # every byte is one ASCII character: nothing lost at the cuts
    assert pieces >= 290
    assert peak < 50 << 20, f"peak {peak / 2**20:.0f} MB while reading a {size >> 20} MB file"


# HTML -----------------------------------------------------------------------------------------

def test_a_web_page_gives_its_visible_text_under_its_headings(tmp_path):
    page = tmp_path / "page.html"
    page.write_bytes("""<!DOCTYPE html><html><head><meta charset="windows-1252"><title>Bakery</title>
        <style>p { color: red }</style><script>var tracking = "do not read me";</script></head>
        <body><nav><a href="/">Home</a></nav><p>Fresh   bread
        every <b>morning</b>.</p><!-- a comment --><h2>Prices</h2><p>Croissant: 1,20 €<br>Baguette: 1,10 €</p>
        <noscript>Turn on scripts</noscript><table><tr><td>Open</td><td>7–19</td></tr></table>
        <script>document.write("hidden")</script></body></html>""".encode("cp1252"))
    read = list(sections(page))
    assert read == [
        Section("Home\n\nFresh bread every morning.", heading="Bakery"),
        Section("Prices\n\nCroissant: 1,20 €\nBaguette: 1,10 €\n\nOpen 7–19", heading="Prices"),
    ]
    text = " ".join(s.text for s in read)
    for hidden in ("tracking", "color", "hidden", "comment", "Turn on scripts"):
        assert hidden not in text


def test_a_web_page_keeps_text_around_comments_and_its_declared_encoding(tmp_path):
    page = tmp_path / "menu.htm"
    # Declared ISO-8859-1, written in Windows-1252 (the € is 0x80): browsers read it as 1252.
    page.write_bytes('<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">'
                     '<p>Crème<!-- price changes -->brûlée, <?php echo 1 ?>4 €</p><div>Déjà servi</div>'
                     .encode("cp1252"))
    assert [s.text for s in sections(page)] == ["Crèmebrûlée, 4 €\n\nDéjà servi"]
    binary = tmp_path / "image.html"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)))
    assert error_of(binary) == "“image.html” is not a web page (it looks like a binary file)."


def test_a_large_web_page_is_parsed_as_it_is_read_and_handed_on_in_pieces(tmp_path):
    page = tmp_path / "archive.html"
    rows = "".join(f"<div><p>Entry {i}: the tide was <b>high</b> at noon.</p></div>\n" for i in range(30000))
    page.write_text(f"<html><body><h1>Archive</h1>{rows}</body></html>", encoding="utf-8")
    read = list(sections(page))
    assert len(read) >= 2  # about 1 MB of text a Section, not the whole page at once
    assert {s.heading for s in read} == {"Archive"}
    text = "\n\n".join(s.text for s in read)
    assert text.count("the tide was high at noon.") == 30000
    assert "Entry 29999: the tide was high at noon." in read[-1].text


def test_a_web_page_nested_beyond_what_the_parser_keeps_says_so(tmp_path):
    page = tmp_path / "generated.html"
    page.write_text("<p>start</p>" + "<font>" * 3000 + "lost?" + "</font>" * 3000 + "<p>end</p>")
    assert error_of(page) == ("“generated.html” nests its elements more than 2,048 deep; "
                              "Hearth cannot read past that point.")
    fine = tmp_path / "nested.html"
    fine.write_text("<p>start</p>" + "<div>" * 1000 + "kept" + "</div>" * 1000 + "<p>end</p>")
    assert [s.text for s in sections(fine)] == ["start\n\nkept\n\nend"]


# Anything else --------------------------------------------------------------------------------

def test_other_files_and_missing_files_get_a_sentence(tmp_path):
    sheet = tmp_path / "budget.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    assert error_of(sheet) == ("Hearth cannot read .xlsx files yet (it reads: PDF, Word (.docx), web pages "
                               "(.html), text, Markdown, CSV, JSON, logs and source code).")
    assert error_of(tmp_path / "gone.txt") == "“gone.txt” could not be read: no such file or directory."
    assert {".pdf", ".docx", ".html", ".txt", ".md", ".csv", ".py", ".json", ".log"} <= KINDS


# Passages -------------------------------------------------------------------------------------

def test_passages_merge_small_paragraphs_cut_long_ones_at_sentences_and_never_cross_a_page():
    long = " ".join(f"Sentence {i} of the long paragraph ends here." for i in range(60))
    drafts = list(passages([
        Section("Short one.\n\nShort   two,\twith spaces.\n\n\n", page=1),
        Section(long, page=2),
        Section("x" * 1000 + "\n\nAfter the blob.", page=3),
    ], target_chars=300))
    assert (drafts[0].text, drafts[0].page) == ("Short one.\n\nShort two, with spaces.", 1)
    on_two = [d for d in drafts if d.page == 2]
    assert all(len(d.text) <= 300 for d in on_two)
    assert all(d.text.endswith("ends here.") and d.text.startswith("Sentence") for d in on_two)
    assert " ".join(d.text for d in on_two) == long  # nothing lost or changed at the cuts
    on_three = [d.text for d in drafts if d.page == 3]
    assert on_three == ["x" * 300, "x" * 300, "x" * 300, "x" * 100 + "\n\nAfter the blob."]
    assert [d.ordinal for d in drafts] == list(range(len(drafts)))


def test_a_text_file_read_in_pieces_gives_whole_passages_across_the_pieces(tmp_path):
    path = tmp_path / "book.txt"
    paragraph = "The sea was calm and the gulls were quiet over the harbour wall. " * 6
    path.write_text((paragraph.strip() + "\n\n") * 40000, encoding="utf-8")  # about 15 MB
    drafts = passages(sections(path))
    for draft in drafts:
        for part in draft.text.split("\n\n"):
            assert part == paragraph.strip()


def test_utf16_is_decoded_across_piece_boundaries(tmp_path):
    path = tmp_path / "wide.txt"
    text = "Ünïcödé line with a € sign.\n" * 100000  # about 5.6 MB in UTF-16
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert "".join(s.text for s in sections(path)) == text
