"""The model's thinking and its answer, told apart however the stream is cut into chunks."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from desktop.core.reasoning import CLOSE_TAG, LONE_CLOSE_WINDOW, OPEN_TAG, ReasoningParser, split

Chunking = Callable[[str], list[str]]


def whole(text: str) -> list[str]:
    return [text]


def by_char(text: str) -> list[str]:
    return list(text)


def random_sizes(seed: int, largest: int) -> Chunking:
    def chunk(text: str) -> list[str]:
        rng = random.Random(seed)
        chunks, pos = [], 0
        while pos < len(text):
            size = rng.randint(1, largest)
            chunks.append(text[pos:pos + size])
            pos += size
        return chunks

    chunk.__name__ = f"random_1_to_{largest}_seed_{seed}"
    return chunk


CHUNKINGS = [whole, by_char, random_sizes(1, 3), random_sizes(2, 9), random_sizes(3, 40)]
each_chunking = pytest.mark.parametrize("chunking", CHUNKINGS, ids=[c.__name__ for c in CHUNKINGS])


class Seen:
    """What the chat view showed after each chunk, and at the end."""

    def __init__(self, parser: ReasoningParser, views: list[tuple[str, str, str]]) -> None:
        self.parser = parser
        self.views = views
        self.thinking = parser.thinking
        self.answer = parser.answer
        self.phase = parser.phase
        self.thought = parser.thought


def stream(text: str, chunking: Chunking = whole, *, opened: bool = False) -> Seen:
    parser = ReasoningParser(opened=opened)
    views = []
    for chunk in chunking(text):
        parser.feed(chunk)
        views.append((parser.thinking, parser.answer, parser.phase))
    parser.finish()
    return Seen(parser, views)


def assert_never_flickers(seen: Seen) -> None:
    """Text only ever grows at the end: nothing shown is later taken back (a partial tag would be)."""
    for thinking, answer, _ in seen.views:
        assert seen.thinking.startswith(thinking)
        assert seen.answer.startswith(answer)


# 1. `<think>` opens a block only at the start of the answer


@each_chunking
def test_an_answer_that_begins_by_thinking_shows_the_thinking_apart(chunking):
    seen = stream("<think>The user greets me. I greet back.</think>Hello! How can I help?", chunking)
    assert seen.thinking == "The user greets me. I greet back."
    assert seen.answer == "Hello! How can I help?"
    assert seen.thought and seen.phase == "answering"
    assert_never_flickers(seen)


@each_chunking
def test_whitespace_before_the_think_tag_does_not_stop_it_being_seen(chunking):
    seen = stream("\n \n<think>Plan.</think>Done.", chunking)
    assert (seen.thinking, seen.answer) == ("Plan.", "Done.")


@each_chunking
def test_an_answer_without_tags_is_all_answer(chunking):
    seen = stream("Paris is the capital of France.\n\nIt has 2.1 million people.", chunking)
    assert seen.thinking == ""
    assert seen.answer == "Paris is the capital of France.\n\nIt has 2.1 million people."
    assert not seen.thought and seen.phase == "answering"
    assert_never_flickers(seen)


@each_chunking
def test_a_think_tag_in_a_code_block_later_in_the_answer_stays_verbatim(chunking):
    text = "Strip the tags like this:\n\n```python\ntext = text.replace('<think>', '')\n```\n"
    seen = stream(text, chunking)
    assert seen.answer == text
    assert seen.thinking == "" and not seen.thought
    assert_never_flickers(seen)


@each_chunking
def test_a_think_tag_in_prose_explaining_it_stays_answer_text(chunking):
    text = "Reasoning models open their thoughts with <think> and then reason."
    seen = stream(text, chunking)
    assert (seen.thinking, seen.answer) == ("", text)


@each_chunking
def test_text_that_merely_starts_like_the_tag_is_answer(chunking):
    seen = stream("<thinking>not a tag</thinking> <b>bold</b> <", chunking)
    assert seen.answer == "<thinking>not a tag</thinking> <b>bold</b> <"
    assert seen.thinking == "" and not seen.thought


# 2. Everything up to `</think>` is thinking; whitespace around it is not shown


@each_chunking
def test_whitespace_around_the_thinking_and_before_the_answer_is_not_shown(chunking):
    seen = stream("<think>\n\n  First, add.\nThen check.  \n\n</think>\n\n\n  The sum is 4.\n", chunking)
    assert seen.thinking == "First, add.\nThen check."
    assert seen.answer == "The sum is 4.\n"
    assert_never_flickers(seen)


@each_chunking
def test_a_thinking_block_keeps_its_inner_lines_and_markup(chunking):
    thoughts = "Step 1: `x = 2`.\n\n```\ncode </thin\n```\n<b>bold</b> and < and </ and </thinking"
    seen = stream(f"<think>{thoughts}</think>Answer", chunking)
    assert seen.thinking == thoughts
    assert seen.answer == "Answer"
    assert_never_flickers(seen)


def test_trailing_whitespace_of_the_thinking_shows_once_more_thinking_follows():
    parser = ReasoningParser()
    parser.feed("<think>One.  \n")
    assert parser.thinking == "One."
    parser.feed("Two.")
    assert parser.thinking == "One.  \nTwo."


# 3. A block whose `<think>` is in the prompt


@each_chunking
def test_when_the_template_opened_the_block_the_answer_starts_as_thinking(chunking):
    seen = stream("Okay, the user wants a haiku.\n</think>\n\nSoft rain on the roof", chunking, opened=True)
    assert seen.thinking == "Okay, the user wants a haiku."
    assert seen.answer == "Soft rain on the roof"
    assert seen.thought
    assert_never_flickers(seen)


@each_chunking
def test_when_the_template_opened_the_block_a_think_tag_written_again_is_not_shown(chunking):
    seen = stream("\n<think>\nHmm.\n</think>\nHi", chunking, opened=True)
    assert (seen.thinking, seen.answer) == ("Hmm.", "Hi")


@each_chunking
def test_when_the_template_opened_the_block_a_later_think_tag_is_thinking_text(chunking):
    seen = stream("The tag <think> opens a block.</think>Yes.", chunking, opened=True)
    assert (seen.thinking, seen.answer) == ("The tag <think> opens a block.", "Yes.")


def test_when_the_template_opened_the_block_the_view_waits_until_text_comes():
    parser = ReasoningParser(opened=True)
    assert parser.phase == "waiting"
    parser.feed("\n")
    assert parser.phase == "waiting"
    parser.feed("Let me see")
    assert (parser.phase, parser.thinking, parser.answer) == ("thinking", "Let me see", "")


@each_chunking
def test_a_lone_close_tag_turns_the_text_before_it_into_thinking(chunking):
    seen = stream("The user asks 2+2. That is 4.\n</think>\n\n2 + 2 = 4.", chunking)
    assert seen.thinking == "The user asks 2+2. That is 4."
    assert seen.answer == "2 + 2 = 4."
    assert seen.thought and seen.phase == "answering"


def test_text_before_a_lone_close_tag_leaves_the_answer_when_the_tag_arrives():
    parser = ReasoningParser()
    parser.feed("Thinking about it")
    assert (parser.thinking, parser.answer, parser.phase) == ("", "Thinking about it", "answering")
    parser.feed(" a bit.</thi")
    assert parser.answer == "Thinking about it a bit."
    parser.feed("nk>\n\n")
    assert (parser.thinking, parser.answer, parser.phase) == ("Thinking about it a bit.", "", "thinking")
    parser.feed("Here it is.")
    assert (parser.answer, parser.phase) == ("Here it is.", "answering")


@each_chunking
def test_a_lone_close_tag_at_the_very_start_is_an_empty_thinking_block(chunking):
    seen = stream("</think>\n\nHello.", chunking)
    assert (seen.thinking, seen.answer, seen.thought) == ("", "Hello.", True)


@each_chunking
@pytest.mark.parametrize("fence", ["```", "~~~", "````", "   ```"])
def test_a_close_tag_inside_a_code_fence_stays_in_the_answer(chunking, fence):
    text = f"Models end thinking with:\n\n{fence}text\nreasoning</think>\nanswer\n{fence.strip()}\n\nThat is all."
    seen = stream(text, chunking)
    assert seen.answer == text
    assert seen.thinking == "" and not seen.thought
    assert_never_flickers(seen)


@each_chunking
@pytest.mark.parametrize("text", ["Look:\n```</think>\ncode\n```", "Look:\n~~~</think>\ncode\n~~~"])
def test_a_close_tag_on_the_line_that_opens_a_fence_stays_in_the_answer(chunking, text):
    assert stream(text, chunking).answer == text


@each_chunking
@pytest.mark.parametrize("text", ["````md\n```\n</think>\n````\nend", "```\n~~~\n</think>\n```\nend"])
def test_a_shorter_or_different_fence_inside_a_fence_does_not_close_it(chunking, text):
    seen = stream(text, chunking)
    assert (seen.thinking, seen.answer) == ("", text)


@each_chunking
def test_a_fence_with_text_after_its_marks_does_not_close_it(chunking):
    text = "```\n``` not a close\n</think>\n```\nend"
    assert stream(text, chunking).answer == text


@each_chunking
def test_a_lone_close_tag_after_a_closed_code_fence_still_ends_the_thinking(chunking):
    text = "I could write:\n```\nprint(1)\n```\nbut better not.\n</think>\nUse print."
    seen = stream(text, chunking)
    assert seen.thinking == "I could write:\n```\nprint(1)\n```\nbut better not."
    assert seen.answer == "Use print."


@each_chunking
def test_a_fence_mark_in_the_middle_of_a_line_opens_no_fence(chunking):
    seen = stream("Say ``` here, then stop.</think>Stopped.", chunking)
    assert (seen.thinking, seen.answer) == ("Say ``` here, then stop.", "Stopped.")


@each_chunking
@pytest.mark.parametrize("quote", ["`", "'", '"'])
def test_a_quoted_close_tag_in_an_answer_stays_in_the_answer(chunking, quote):
    text = f"Qwen3 ends its thinking with {quote}</think>{quote}; everything after it is the answer."
    seen = stream(text, chunking)
    assert (seen.thinking, seen.answer, seen.thought) == ("", text, False)


def test_a_close_tag_far_into_a_long_answer_stays_in_the_answer():
    text = "word " * (LONE_CLOSE_WINDOW // 5 + 1) + "</think> after"
    for chunking in (whole, random_sizes(4, 50)):
        seen = stream(text, chunking)
        assert (seen.thinking, seen.answer) == ("", text)


def test_a_close_tag_just_inside_the_window_still_ends_the_thinking():
    before = "a" * (LONE_CLOSE_WINDOW - 1)
    for chunking in (whole, random_sizes(5, 50)):
        seen = stream(before + "</think>answer", chunking)
        assert (seen.thinking, seen.answer) == (before, "answer")
        seen = stream(before + "a</think>answer", chunking)
        assert (seen.thinking, seen.answer) == ("", before + "a</think>answer")


@each_chunking
def test_only_the_first_lone_close_tag_counts(chunking):
    seen = stream("Thoughts.</think>Answer with </think> in it.", chunking)
    assert (seen.thinking, seen.answer) == ("Thoughts.", "Answer with </think> in it.")


# 4. A tag split across chunks never shows


@pytest.mark.parametrize(("text", "opened"), [
    ("<think>Plan it.</think>Done.", False),
    ("  <think>\nPlan it.\n</think>\n\nDone.", False),
    ("Plan it.</think>Done.", False),
    ("Plan it.</think>Done.", True),
    ("<think></think>Done.", False),
])
def test_a_think_tag_split_across_chunks_never_shows(text, opened):
    final = split(text, opened=opened)
    assert final == ("Plan it.", "Done.") or final == ("", "Done.")
    for cut in range(len(text) + 1):
        parser = ReasoningParser(opened=opened)
        for piece in (text[:cut], text[cut:]):
            parser.feed(piece)
            assert "<" not in parser.thinking + parser.answer
            assert final[0].startswith(parser.thinking)
            # Before a lone close tag arrives, the text before it shows as answer.
            assert final[1].startswith(parser.answer) or final[0].startswith(parser.answer)
        parser.finish()
        assert (parser.thinking, parser.answer) == final


@pytest.mark.parametrize("partial", [CLOSE_TAG[:size] for size in range(1, len(CLOSE_TAG))])
def test_a_partial_close_tag_is_held_back_until_the_next_chunk_tells(partial):
    parser = ReasoningParser()
    parser.feed("<think>Reasoning " + partial)
    assert parser.thinking == "Reasoning"
    parser.feed("?")
    assert parser.thinking == "Reasoning " + partial + "?"


@pytest.mark.parametrize("partial", [OPEN_TAG[:size] for size in range(1, len(OPEN_TAG))])
def test_a_partial_open_tag_is_held_back_until_the_next_chunk_tells(partial):
    parser = ReasoningParser()
    parser.feed(partial)
    assert (parser.answer, parser.phase) == ("", "waiting")
    parser.feed("?")
    assert (parser.answer, parser.phase) == (partial + "?", "answering")


def test_text_that_cannot_become_a_tag_shows_at_once():
    parser = ReasoningParser()
    parser.feed("<think>x < y and </thinkX")
    assert parser.thinking == "x < y and </thinkX"
    parser.feed("</think>a <b")
    assert parser.answer == "a <b"  # the block is over: no tag can follow


def test_no_more_than_a_tag_less_one_character_is_ever_held_back():
    parser = ReasoningParser()
    parser.feed("<think>abc</think")
    assert parser.thinking == "abc"
    parser.feed("s")
    assert parser.thinking == "abc</thinks"
    answer = ReasoningParser()
    answer.feed("1 </think")
    assert answer.answer == "1 "


def test_an_answer_may_hold_back_a_possible_lone_close_tag_for_a_moment():
    parser = ReasoningParser()
    parser.feed("Use <")
    assert parser.answer == "Use "
    parser.feed("b> for bold")
    assert parser.answer == "Use <b> for bold"


def test_inside_a_code_fence_nothing_is_held_back():
    parser = ReasoningParser()
    parser.feed("```html\nx </thi")
    assert parser.answer == "```html\nx </thi"


def test_after_a_quote_nothing_is_held_back():
    parser = ReasoningParser()
    parser.feed("Type `</thi")
    assert parser.answer == "Type `</thi"


# 5. Empty blocks


@each_chunking
@pytest.mark.parametrize("block", ["<think></think>", "<think>\n\n</think>", "<think> \n \t</think>"])
def test_an_empty_thinking_block_shows_no_thinking_but_counts_as_thought(chunking, block):
    seen = stream(block + "\n\nHi there.", chunking)
    assert (seen.thinking, seen.answer, seen.thought) == ("", "Hi there.", True)


def test_an_empty_block_without_an_answer_yet_is_still_thinking():
    parser = ReasoningParser()
    parser.feed("<think>\n\n</think>\n\n")
    assert (parser.thinking, parser.answer, parser.phase, parser.thought) == ("", "", "thinking", True)


# 6. A stream that ends inside the block


@each_chunking
def test_a_stream_cut_inside_the_thinking_keeps_it_as_thinking(chunking):
    seen = stream("<think>\nLet me count: one, two, three", chunking)
    assert (seen.thinking, seen.answer, seen.phase) == ("Let me count: one, two, three", "", "thinking")


@pytest.mark.parametrize("partial", [CLOSE_TAG[:size] for size in range(1, len(CLOSE_TAG))])
def test_a_partial_close_tag_at_the_end_of_the_stream_shows_as_thinking(partial):
    parser = ReasoningParser()
    parser.feed("<think>Almost done " + partial)
    parser.finish()
    assert (parser.thinking, parser.answer) == ("Almost done " + partial, "")


@pytest.mark.parametrize("partial", [OPEN_TAG[:size] for size in range(1, len(OPEN_TAG))])
def test_a_stream_that_stops_on_a_partial_open_tag_shows_it_as_answer(partial):
    parser = ReasoningParser()
    parser.feed(partial)
    parser.finish()
    assert (parser.thinking, parser.answer, parser.thought) == ("", partial, False)
    assert split(partial, opened=True) == (partial, "")


def test_a_partial_lone_close_tag_at_the_end_of_the_stream_shows_as_answer():
    parser = ReasoningParser()
    parser.feed("The tag is </thin")
    parser.finish()
    assert (parser.thinking, parser.answer) == ("", "The tag is </thin")


def test_an_opened_block_stopped_before_any_text_is_empty():
    parser = ReasoningParser(opened=True)
    parser.finish()
    assert (parser.thinking, parser.answer, parser.phase) == ("", "", "waiting")


def test_finishing_twice_is_harmless_and_feeding_afterwards_is_refused():
    parser = ReasoningParser()
    parser.feed("<think>a</th")
    parser.finish()
    parser.finish()
    assert parser.thinking == "a</th"
    with pytest.raises(RuntimeError, match="already ended"):
        parser.feed("ink>")


# 7. Reasoning sent in its own field


def test_reasoning_deltas_show_as_thinking_and_then_the_answer_follows():
    parser = ReasoningParser()
    parser.feed(reasoning="The user")
    assert (parser.thinking, parser.answer, parser.phase, parser.thought) == ("The user", "", "thinking", True)
    parser.feed(reasoning=" says hi.\n")
    parser.feed(content="\n\n")
    assert parser.phase == "thinking"
    parser.feed(content="Hello!")
    assert (parser.thinking, parser.answer, parser.phase) == ("The user says hi.", "Hello!", "answering")


def test_reasoning_deltas_are_never_searched_for_tags():
    parser = ReasoningParser()
    for piece in ["I must not write <th", "ink> or </think> here."]:
        parser.feed(reasoning=piece)
    parser.feed(content="OK.")
    parser.finish()
    assert (parser.thinking, parser.answer) == ("I must not write <think> or </think> here.", "OK.")


def test_a_think_block_in_the_content_after_reasoning_deltas_is_still_thinking():
    parser = ReasoningParser()
    parser.feed(reasoning="Server-parsed part. ")
    for chunk in by_char("\n<think>Tagged part.</think>\nAnswer."):
        parser.feed(content=chunk)
        assert "<" not in parser.answer
    parser.finish()
    assert (parser.thinking, parser.answer) == ("Server-parsed part. Tagged part.", "Answer.")


def test_after_reasoning_deltas_a_close_tag_in_the_content_is_answer_text():
    # The server keeps thinking in its own field: content is the answer, tags and all.
    parser = ReasoningParser()
    parser.feed(reasoning="Parsed.")
    parser.feed(content="Red. <think>late</think> done")
    parser.finish()
    assert (parser.thinking, parser.answer) == ("Parsed.", "Red. <think>late</think> done")


def test_a_close_tag_after_a_think_tag_in_the_answer_stays_answer_text():
    text = "Red, green, blue. Some models write <think> tags like <think>this</think>."
    for chunks in ([text], list(text), [text[:40], text[40:]]):
        parser = ReasoningParser()
        for chunk in chunks:
            parser.feed(chunk)
        parser.finish()
        assert (parser.thinking, parser.answer) == ("", text)

def test_reasoning_and_content_in_one_chunk_keep_their_order():
    parser = ReasoningParser()
    parser.feed(content="", reasoning="Thought.")
    parser.feed(content="Answer.", reasoning="")
    assert (parser.thinking, parser.answer) == ("Thought.", "Answer.")


def test_whitespace_only_reasoning_leaves_the_view_waiting():
    parser = ReasoningParser()
    parser.feed(reasoning="\n")
    assert (parser.phase, parser.thought) == ("waiting", False)


# 8. Only one block, at the start


@each_chunking
def test_a_second_think_block_after_the_answer_began_is_answer_text(chunking):
    seen = stream("<think>First.</think>Answer. <think>Second.</think> More.", chunking)
    assert (seen.thinking, seen.answer) == ("First.", "Answer. <think>Second.</think> More.")


@each_chunking
def test_a_think_tag_right_after_the_first_block_is_answer_text(chunking):
    seen = stream("<think>a</think>\n<think>b</think>", chunking)
    assert (seen.thinking, seen.answer) == ("a", "<think>b</think>")


# 9. Tags are lower-case, as models write them


@each_chunking
@pytest.mark.parametrize("text", ["<THINK>x</THINK>y", "<Think>x</Think>y", "< think>x</ think>y"])
def test_tags_written_otherwise_than_models_write_them_are_answer_text(chunking, text):
    seen = stream(text, chunking)
    assert (seen.thinking, seen.answer, seen.thought) == ("", text, False)


# phase, from first byte to last


def test_the_phase_follows_the_stream_from_waiting_to_answering():
    parser = ReasoningParser()
    phases = []
    for chunk in ["", "\n", " <th", "ink>", "\n", "Hmm", ".</think>", "\n\n", "Yes", "."]:
        parser.feed(chunk)
        phases.append(parser.phase)
    assert phases == ["waiting", "waiting", "waiting", "thinking", "thinking", "thinking", "thinking",
                      "thinking", "answering", "answering"]


# split() for stored text


def test_split_takes_a_stored_answer_apart():
    assert split("<think>\nWhy?\n</think>\n\nBecause.") == ("Why?", "Because.")
    assert split("Why?\n</think>\n\nBecause.", opened=True) == ("Why?", "Because.")
    assert split("Just an answer.") == ("", "Just an answer.")
    assert split("") == ("", "")
    assert split("<think>cut off mid-thou") == ("cut off mid-thou", "")


# any text, any chunking: the same result, and nothing flickers

PIECES = [OPEN_TAG, CLOSE_TAG, "<think", "</thin", "<", "</", "think>", ">", "```", "~~~", "\n", "\n\n",
          " ", "   ", "a", "b.", "`", '"', "x</think>", "<b>"]


def random_texts(count: int) -> list[tuple[str, bool]]:
    rng = random.Random(2024)
    return [("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30))), rng.random() < 0.3)
            for _ in range(count)]


@pytest.mark.parametrize(("text", "opened"), random_texts(400))
def test_any_text_comes_out_the_same_however_it_is_chunked(text, opened):
    expected = stream(text, whole, opened=opened)
    for chunking in CHUNKINGS[1:]:
        seen = stream(text, chunking, opened=opened)
        assert (seen.thinking, seen.answer, seen.phase, seen.thought) == (
            expected.thinking, expected.answer, expected.phase, expected.thought)
        for thinking, answer, _ in seen.views:
            assert seen.thinking.startswith(thinking)
            # A lone close tag moves the answer so far into the thinking; otherwise it only grows.
            assert seen.answer.startswith(answer) or seen.thinking.startswith(answer.rstrip())


# 10. Long answers stay cheap


def test_a_long_answer_in_200000_small_chunks_comes_out_whole():
    thoughts = [f"step {i}. " for i in range(100_000)]
    words = [f"word{i} " if i % 10 else "\n```\n" for i in range(100_000)]
    parser = ReasoningParser()
    parser.feed("<think>")
    for chunk in thoughts:
        parser.feed(chunk)
    parser.feed("</think>\n\n")
    for chunk in words:
        parser.feed(chunk)
    parser.finish()
    assert parser.thinking == "".join(thoughts).strip()
    assert parser.answer == "".join(words).lstrip()


def test_a_long_untagged_answer_in_200000_small_chunks_comes_out_whole():
    lines = [f"line {i} with </ and `code`\n" if i % 7 else "```\n" for i in range(200_000)]
    parser = ReasoningParser()
    for chunk in lines:
        parser.feed(chunk)
    parser.finish()
    assert parser.answer == "".join(lines)
    assert parser.thinking == ""
