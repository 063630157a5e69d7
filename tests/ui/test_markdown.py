"""Model output as the window draws it: Markdown, code as code, and no HTML from the model."""

import re
from html.parser import HTMLParser

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCharFormat, QTextCursor, QTextDocument

from desktop.ui.markdown import LiveMarkdown, image_address, is_live_link, plain_copy, to_html
from desktop.ui.math_render import issued_image
from tests.ui.conftest import formula_sources


def test_fenced_code_becomes_a_shaded_monospaced_block_with_its_language():
    html = to_html("Try this:\n\n```python\nprint('<hi>')\n```\n", code_bg="#123456")
    assert 'bgcolor="#123456"' in html
    assert "<pre" in html and "monospace" in html
    document = QTextDocument()
    document.setHtml(html)
    assert "print('<hi>')" in document.toPlainText()  # coloured by pygments, still as written
    assert ">python</div>" in html


def test_html_written_by_the_model_is_shown_as_text_not_run():
    html = to_html('<img src="http://example.com/x.png"> <b>bold?</b>')
    assert "<img" not in html and "<b>" not in html
    assert "&lt;img" in html


def test_lists_emphasis_and_inline_code():
    html = to_html("1. **one** and `code`\n2. *two*")
    assert "<ol>" in html and "<strong>one</strong>" in html and "<em>two</em>" in html
    assert "<code" in html and "code" in html


def test_an_unfinished_code_block_while_streaming_still_renders_as_code():
    assert "<pre" in to_html("```\nhalf a block")


ANSWERS = {
    "a long numbered list": "".join(f"{i}. Item number {i}\n" for i in range(1, 120)),
    "prose, lists, code and a table": (
        "# Heat pumps\n\nA heat pump moves heat.\nIt is **efficient**.\n\n- cheap to run\n- quiet\n"
        "  and small\n* another list\n\n1. first\n2. second\n   - nested\n3. third\nlazy line\n\n"
        "```python\n\nx = 1\n\n- not a list\n```\n\n> a quote\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "1) other numbers\n2) more\n\nThe end."),
    "math, images, links and entities": (
        "Given \\( a &lt; b \\), we get\n\\[\n  a^2 \\\\\n  - b\n\\]\nand $x$ costs $5 or $10.\n\n"
        "$$\nx = 1\n\n- not a list\n$$\n\n- one\n$$\n- two\n$$\n- three\n\n"
        "```\n$$\n```\n$$\n```\n$$\n\n![a cat](/etc/hostname) [a](/etc/passwd) <file:///x> [ok](https://example.com)\n\n"
        "1. ![x](../../etc/passwd)\n2. \\[ y \\]\n3. &amp; done"),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_an_answer_drawn_as_it_grows_looks_the_same_as_when_it_is_finished(name):
    # The live answer re-parses only its end; at every point of its growth the reader must see
    # exactly what the whole text renders to.
    text = ANSWERS[name]
    live = LiveMarkdown(code_bg="#f2f1f4", muted="#6e6e76")
    for end in range(1, len(text) + 1):
        assert live.render(text[:end]) == to_html(text[:end]), text[:end]



# -- what an answer may never make Qt do, and what it must show as written ---------------------

@pytest.fixture(autouse=True)
def _qt_fonts(qapp):
    """Qt lays text out only inside an application (for its fonts)."""


def shown(text: str) -> str:
    """The words a reader sees for `text`: the rendered rich text as Qt lays it out."""
    document = QTextDocument()
    document.setHtml(to_html(text))
    return document.toPlainText().replace("\u200b", "").strip()


def format_at(text: str, needle: str) -> QTextCharFormat:
    """The character format Qt draws `needle` of the rendered `text` with."""
    document = QTextDocument()
    document.setHtml(to_html(text))
    found = document.find(needle)
    assert not found.isNull(), (needle, document.toPlainText())
    cursor = QTextCursor(document)
    cursor.setPosition(found.selectionStart() + 1)
    return cursor.charFormat()  # a value: the document goes with this function


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


NASTY = [
    "![x](/dev/zero)", "![x](/etc/hostname)", "![x](../../etc/passwd)", "![x](http://127.0.0.1:9/img.png)",
    '![x](/etc/hostname "a title")', "![x][r]\n\n[r]: /etc/hostname", "![alt <b>](</etc/host name>)",
    "[![badge](/etc/hostname)](http://example.com)", "![![inner](/a)](/b)", "| a | b |\n|---|---|\n| ![i](/x) | <img src=/y> |",
    "[a](/etc/passwd)", "[b](file:///etc/passwd)", "[c](javascript:alert(1))", "[c](JaVaScRiPt:alert(1))",
    "[d](data:text/html;base64,PGI+)", "[e](data:image/png;base64,iVBO)", "[f](relative/page.html)", "[g](#anchor)",
    "[h](//example.com/x)", "[i](http:/etc/passwd)", "[j](ftp://example.com)", "[k](vbscript:x)",
    '[l](http://example.com "<img src=/etc/hostname>")', "[m][r]\n\n[r]: file:///etc/passwd",
    "<file:///etc/passwd>", "<javascript:alert(1)>", "<http://example.com/ok>", "<me@example.com>",
    '<img src="/etc/hostname">', "<IMG SRC=/etc/hostname>", '<a href="file:///etc/passwd">x</a>',
    '<link rel="stylesheet" href="/etc/hostname">', '<style>p{background:url(/etc/hostname)}</style>',
    '<div style="background-image:url(/etc/hostname)">x</div>', '<table background="/etc/hostname"><tr><td>x</td></tr></table>',
    "<script>alert(1)</script>", "<!-- <img src=/etc/hostname> -->", "&lt;img src=/etc/hostname&gt;",
    r"$\href{file:///etc/passwd}{x}$", r"\( <img src=/etc/hostname> \)", "$$\n<img src=/x>\n$$",
    "```html\n<img src=/etc/hostname>\n```", "`<img src=/etc/hostname>`",
]


@pytest.mark.parametrize("text", NASTY)
def test_nothing_an_answer_writes_can_load_a_file_or_open_anything_but_the_web(text):
    # What Qt's rich text reads or follows: <img src>, background images, style sheets, links.
    # The only tags left are the renderer's own, and every link is http(s), mailto or an image
    # chip (whose href Hearth never opens).
    for html in (to_html(text), LiveMarkdown(code_bg="#000", muted="#111").render(text)):
        parser = _Tags()
        parser.feed(html)
        for tag, attrs in parser.tags:
            if tag == "img":  # only a formula Hearth typeset itself, in memory
                assert issued_image(attrs.get("src", "")) is not None, html
                continue
            assert tag not in ("link", "style", "script", "iframe", "object", "embed", "body"), html
            assert not {"src", "background", "srcset"} & set(attrs), html
            assert "url(" not in attrs.get("style", ""), html
            if "href" in attrs:
                href = attrs["href"]
                assert is_live_link(href) or image_address(href) is not None, html
                assert href.split(":")[0].lower() in ("http", "https", "mailto", "hearth-image"), html


@pytest.mark.parametrize(("text", "seen"), [
    ("![x](/dev/zero)", "Image: x"),
    ("![a chart](http://127.0.0.1:9/img.png)", "Image: a chart"),
    ("![](/etc/hostname)", "Image: image"),
    ("[a](/etc/passwd)", "a (/etc/passwd)"),
    ("[b](file:///etc/passwd)", "b (file:///etc/passwd)"),
    ("[c](javascript:alert(1))", "c (javascript:alert(1))"),
    ("[my notes](../notes%20and%20plans.txt)", "my notes (../notes and plans.txt)"),
    ("<file:///etc/passwd>", "file:///etc/passwd"),
    ('<img src="/etc/hostname">', '<img src="/etc/hostname">'),
    ("[site](https://example.com/a?b=1&c=2)", "site"),
])
def test_images_are_named_and_links_that_are_not_web_links_show_their_target_as_text(text, seen):
    assert shown(text).strip() == seen


def test_an_image_chip_says_where_the_image_was_on_hover():
    html = to_html("![the cat](/home/me/cat.png)")
    assert 'title="Image not loaded: /home/me/cat.png"' in html
    assert image_address(html.split('href="')[1].split('"')[0]) == "/home/me/cat.png"


def test_a_live_link_shows_its_whole_target_on_hover_not_the_models_title():
    html = to_html('[docs](https://example.com/a/b?q=1 "Totally safe")')
    assert 'href="https://example.com/a/b?q=1" title="https://example.com/a/b?q=1"' in html
    assert "Totally safe" not in html


@pytest.mark.parametrize(("text", "seen"), [
    ("5 &lt; 6", "5 < 6"),
    ("Tom &amp; Jerry", "Tom & Jerry"),
    ("&copy; 2024 &mdash; &#65;&#x42;", "© 2024 — AB"),
    ("&foo; is not an entity", "&foo; is not an entity"),
    ("&copy without its semicolon", "&copy without its semicolon"),
    (r"\&lt; is how you write it", "&lt; is how you write it"),
    ("<b>bold?</b> a <br> tag", "<b>bold?</b> a <br> tag"),
    ("`5 &lt; 6` in code", "5 &lt; 6 in code"),
    ("| a &lt; b | c |\n|---|---|\n| &amp; | x |", "a < b\nc\n&\nx"),
])
def test_entities_follow_commonmark_and_raw_html_stays_visible(text, seen):
    assert " ".join(shown(text).split(" ")).replace("  ", " ") == seen


MATH = [
    (r"So \( x^2 + \alpha \) holds.", r"\( x^2 + \alpha \)"),
    (r"Inline display \[ \frac{a}{b} \] too.", r"\[ \frac{a}{b} \]"),
    (r"Energy is $E = mc^2$ and $\sqrt{2}$.", "$E = mc^2$"),
    ("Sum $$\\sum_{i=1}^n i$$ inline.", "$$\\sum_{i=1}^n i$$"),
    ("a \\\\ b in $a \\\\ b$", "$a \\\\ b$"),
    ("An unclosed \\( stays, then \\( y \\) is math.", "\\( y \\)"),
]


def image_sources(text: str) -> list[str]:
    """The LaTeX of each typeset formula in the rendered `text` (its images' alt text)."""
    return formula_sources(to_html(text))


@pytest.mark.parametrize(("text", "formula"), MATH)
def test_inline_math_is_typeset_and_keeps_its_source_with_every_backslash(text, formula):
    # Formulas that cannot be typeset keep every backslash in a math face: tests/ui/test_math.py.
    opener = 2 if formula.startswith(("\\", "$$")) else 1
    assert formula[opener:-opener].strip() in image_sources(text)
    assert formula not in shown(text) and "\ufffc" in shown(text)


@pytest.mark.parametrize("text", [
    "Then\n\\[\n\\begin{aligned}\n  a &= b \\\\\n  c &= d\n\\end{aligned}\n\\]\nso.",
    "$$\n\\int_0^1 x\\,dx = \\tfrac12 \\\\\ny = 2\n$$",
    "$$ e^{i\\pi} + 1 = 0 $$",
    "\\[\na &= 1 \\\\[4pt]\nb &= 2\n\\]",
    "- an item\n\n  \\[\n  x = 1\n  \\]\n",
    "> quoted\n>\n> $$\n> y = 2\n> $$",
])
def test_a_display_formula_is_its_own_centred_block_typeset_or_with_its_lines_as_written(text):
    document = QTextDocument()
    document.setHtml(to_html(text))
    plain = document.toPlainText().replace("\u200b", "").replace("\xa0", " ")
    formula = re.search(r"(\\\[|\$\$)[\s\S]*?(\\\]|\$\$)", text).group(0)
    lines = [line.strip().lstrip("> ").strip() for line in formula.splitlines()]
    if "\ufffc" in plain:  # typeset: one centred picture whose alt text is the formula
        (source,) = image_sources(text)
        written = " ".join(line.strip().lstrip(">") for line in formula[2:-2].splitlines())
        assert source.split() == written.split(), (source, formula)  # as written, but the quote marks
        block = document.find("\ufffc").block()
        assert block.blockFormat().alignment() & Qt.AlignmentFlag.AlignHCenter
        return
    shown_lines = [line.strip() for line in plain.splitlines()]
    for line in lines:  # each line as written, on a line of its own, backslashes kept
        assert line in shown_lines, (line, plain)
    cursor = QTextCursor(document)
    cursor.setPosition(document.find(lines[-1]).selectionStart())
    table = cursor.currentTable()
    assert table is not None and table.format().alignment() & Qt.AlignmentFlag.AlignHCenter


@pytest.mark.parametrize("text", [
    "It costs $5 or $10.", "Between $5 and $10, $20-$30.", "$ 5 and 6 $", "US$5, AU$7", "Save $5!",
])
def test_prices_stay_plain_text(text):
    assert shown(text) == text
    assert "DejaVu Serif" not in format_at(text, "5").font().families()


def test_dollars_and_brackets_inside_code_stay_code():
    text = "Use `$x$` or `\\(y\\)` in a shell:\n\n```sh\necho $HOME $$\n\\[ not math \\]\n```\n"
    plain = shown(text)
    assert "$x$" in plain and "\\(y\\)" in plain and "echo $HOME $$\n\\[ not math \\]" in plain
    for needle in ("$x$", "\\(y\\)", "echo $HOME"):
        assert "DejaVu Sans Mono" in format_at(text, needle).font().families()


def test_a_long_formula_still_wraps_and_copies_without_invisible_characters():
    formula = "$" + "x_{1}+" * 30 + "y$"
    assert "\u200b" in to_html(formula)  # breakable, for drawing
    assert plain_copy(shown(formula) + "\u200b\u2029\xa0") == shown(formula) + "\n "
