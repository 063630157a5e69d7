"""Model output as the window draws it: Markdown, code as code, and no HTML from the model."""

import pytest

from desktop.ui.markdown import LiveMarkdown, to_html


def test_fenced_code_becomes_a_shaded_monospaced_block_with_its_language():
    html = to_html("Try this:\n\n```python\nprint('<hi>')\n```\n", code_bg="#123456")
    assert 'bgcolor="#123456"' in html
    assert "<pre" in html and "monospace" in html
    assert "print(&#x27;&lt;hi&gt;&#x27;)" in html or "print('&lt;hi&gt;')" in html
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
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_an_answer_drawn_as_it_grows_looks_the_same_as_when_it_is_finished(name):
    # The live answer re-parses only its end; at every point of its growth the reader must see
    # exactly what the whole text renders to.
    text = ANSWERS[name]
    live = LiveMarkdown(code_bg="#f2f1f4", muted="#6e6e76")
    for end in range(1, len(text) + 1):
        assert live.render(text[:end]) == to_html(text[:end]), text[:end]

