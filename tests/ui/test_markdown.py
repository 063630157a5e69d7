"""Model output as the window draws it: Markdown, code as code, and no HTML from the model."""

from desktop.ui.markdown import to_html


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
