"""A comparison exported as one web page, drawn by the answer renderer: code coloured, tables as
tables, math as pictures inside the file, image references as chips, and nothing a model writes
(or a title, or a model's name) can put a script, an event handler or an outside resource into
the page. The page is read back with Python's own HTML parser, and drawn by Qt to look at."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from PySide6.QtWidgets import QTextBrowser

from desktop.ui.export_html import Entry, Section, answer_html, page

HOSTILE = ('<script>alert("answer")</script> <img src=x onerror=alert(1)> '
           '[click](javascript:alert(2)) "><svg onload=alert(3)> <a href="https://evil.example/x" '
           'onclick="steal()">raw link</a> <iframe src="https://evil.example/frame"></iframe>')
ANSWER = (
    "Here is a function:\n\n"
    "```python\ndef area(r: float) -> float:\n    return 3.14159 * r ** 2  # pi r squared\n```\n\n"
    "| shape | area |\n|---|--:|\n| circle | \\( \\pi r^2 \\) |\n| square | $a^2$ |\n\n"
    "The area is \\( \\pi r^2 \\). A picture: ![a diagram](https://images.example/d.png) and "
    "![local](/etc/passwd). See [the docs](https://docs.example/area) or [mail](mailto:me@example.com) "
    "or [a file](file:///etc/passwd).\n\n" + HOSTILE + "\n"
)
EVIL_NAME = '"><svg onload=alert(4)><script>alert(5)</script>'


class Tree(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.data: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.data.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def comparison_page() -> str:
    return page(f"Which is better? {EVIL_NAME}", [
        Section(f"Prompt 1 {EVIL_NAME}", [
            Entry("You", f"Show me the area of a circle. {EVIL_NAME}", plain=True),
            Entry(f"A: {EVIL_NAME}", ANSWER, note=f"12 tokens/s {EVIL_NAME}"),
            Entry("B: standin/gpt-4o", "Just **words** and `code`."),
        ], note="Vote: A was better"),
    ], subtitle=EVIL_NAME)


def test_the_exported_page_draws_code_tables_math_and_chips_and_loads_nothing(qapp, shots_dir):
    text = comparison_page()
    tree = Tree(text)
    tags = {name for name, _ in tree.tags}
    # Nothing runs and nothing is fetched: no script or frame, no handler, no outside resource.
    assert not tags & {"script", "iframe", "svg", "object", "embed", "link", "base", "form"}
    assert [(name, key) for name, attrs in tree.tags for key in attrs if key.startswith("on")] == []
    hrefs = [attrs["href"] for attrs in tree.all("a")]
    assert sorted(hrefs) == ["https://docs.example/area", "mailto:me@example.com"]  # the answer's live links only
    sources = [attrs.get("src", "") for name, attrs in tree.tags if "src" in attrs]
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r"(?i)javascript:\s*alert|url\(|@import", re.sub(r"<p>.*?</p>", "", text, flags=re.S))
    [policy] = [a["content"] for a in tree.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    # The model's and the names' markup is shown as text, as written.
    words = "".join(tree.data)
    assert '<script>alert("answer")</script>' in words and "<img src=x onerror=alert(1)>" in words
    assert words.count(EVIL_NAME) >= 4  # title, heading, author, note, prompt: all as text
    assert "(javascript:alert(2))" in words and "(file:///etc/passwd)" in words  # dead links show their target

    # Code: coloured by pygments under its language, with the colours in the page's own sheet.
    [caption] = re.findall(r"<figcaption>(.*?)</figcaption>", text)
    assert caption == "python"
    code = re.search(r'<pre class="hl"><code>(.*?)</code></pre>', text, re.S).group(1)
    assert '<span class="k">def</span>' in code and '<span class="c1"># pi r squared</span>' in code
    assert re.search(r"\.hl \.k \{ color: #[0-9A-Fa-f]+", text)  # light
    assert re.search(r"@media \(prefers-color-scheme: dark\) \{\n\.hl \.k \{ color: #[0-9A-Fa-f]+", text)
    # The table is a table (in a box that scrolls sideways); math is a picture inside the file.
    assert '<div class="wide"><table>' in text and len(tree.all("td")) == 4
    maths = [a for a in tree.all("img") if a.get("class") == "math"]
    assert [a["alt"] for a in maths] == ["\\pi r^2", "a^2", "\\pi r^2"]
    # Images the model referred to are chips with their address, never loaded.
    chips = [a["title"] for name, a in tree.tags if a.get("class") == "chip"]
    assert chips == ["Image not loaded: https://images.example/d.png", "Image not loaded: /etc/passwd"]
    assert "\u200b" not in text  # no invisible characters to carry into a copy

    view = QTextBrowser()  # Qt draws it as a document (a browser shows the styled page)
    view.setOpenLinks(False)
    view.resize(900, 1000)
    view.setHtml(text)
    assert "def area(r: float)" in view.toPlainText() and "Which is better?" in view.toPlainText()
    view.grab().save(str(shots_dir / "compare-export-html.png"))


def test_one_answer_alone_is_safe_to_put_in_any_page(qapp):
    for hostile in (HOSTILE, f"<style>body{{display:none}}</style>{EVIL_NAME}", "[x](javascript:alert(1))",
                    "[y](<javascript:alert(1)>)", "![z](javascript:alert(1))", "<a href=https://x.example>a</a>"):
        tree = Tree(answer_html(hostile))
        assert {name for name, _ in tree.tags} <= {"p", "span", "a", "img", "br", "code", "em", "strong"}, hostile
        assert all(not key.startswith("on") and key != "style" for _, attrs in tree.tags for key in attrs)
        assert all(attrs["href"].startswith(("http://", "https://", "mailto:")) for attrs in tree.all("a"))
