"""A model's thinking and its answer, told apart while the answer streams in (or from a whole stored text)."""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

# A `</think>` with no `<think>` before it ends a thinking block whose `<think>` the chat template wrote
# into the prompt. It is believed only within this many characters of the answer's start: 32,768
# characters hold about 8,000 tokens, twice Hearth's default context of 4,096, so a local model's whole
# thinking fits; further into an answer the tag is far more likely prose about tags, and from there on
# nothing is held back or rescanned.
LONE_CLOSE_WINDOW = 32_768

# A `</think>` right after one of these is a quotation ("the `</think>` tag"), not the end of thinking.
_QUOTES = "`'\""

_START, _THINKING, _ANSWER = "start", "thinking", "answer"


def _partial_tag(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (0 to len(tag) - 1)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class _Text:
    """Text that grows a chunk at a time, without leading whitespace (and, if asked, without trailing)."""

    def __init__(self, *, keep_trailing_space: bool) -> None:
        self._parts: list[str] = []
        self._space: list[str] = []  # trailing whitespace, shown only once more text follows it
        self._keep_trailing_space = keep_trailing_space

    def add(self, text: str) -> None:
        if not self._parts:
            text = text.lstrip()
            if not text:
                return
        if self._keep_trailing_space:
            self._parts.append(text)
            return
        body = text.rstrip()
        if not body:
            self._space.append(text)
            return
        self._parts.extend(self._space)
        self._space.clear()
        self._parts.append(body)
        if len(body) < len(text):
            self._space.append(text[len(body):])

    def take(self) -> str:
        """Empties the text and returns what it showed."""
        value = self.value
        self._parts.clear()
        self._space.clear()
        return value

    @property
    def value(self) -> str:
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def last_char(self) -> str:
        if self._space:
            return self._space[-1][-1]
        return self._parts[-1][-1] if self._parts else ""

    def __bool__(self) -> bool:
        return bool(self._parts)


class _Fences:
    """Follows Markdown code fences (``` or ~~~ at a line start, up to 3 spaces in) a chunk at a time.

    Only the first characters of each line are looked at one by one; the rest of a line is skipped
    with `str.find`, so following a chunk costs O(its length).
    """

    def __init__(self) -> None:
        self._open: tuple[str, int] | None = None  # the fence character and run length of the open fence
        self._indent = 0
        self._char = ""
        self._run = 0
        self._stage = "indent"  # then "run", "after" (after a run of 3 or more), or "rest" (decided)

    @property
    def inside(self) -> bool:
        """Whether the text so far ends inside a fenced block (or on the line that opens one)."""
        return self._open is not None or (self._stage in ("run", "after") and self._run >= 3)

    def add(self, text: str) -> None:
        pos = 0
        while pos < len(text):
            if self._stage == "rest":
                newline = text.find("\n", pos)
                if newline < 0:
                    return
                pos = newline
            char = text[pos]
            pos += 1
            if char == "\n":
                self._end_line()
            else:
                self._step(char)

    def _step(self, char: str) -> None:
        if self._stage == "indent":
            if char == " " and self._indent < 3:
                self._indent += 1
            elif char in "`~":
                self._char, self._run, self._stage = char, 1, "run"
            else:
                self._stage = "rest"
            return
        if self._stage == "run":
            if char == self._char:
                self._run += 1
                return
            if self._run < 3:
                self._stage = "rest"
                return
            self._stage = "after"
        # After a run of 3 or more: outside a fence the line opens one, whatever follows (an info
        # string); inside, it closes the fence only if nothing but spaces follows.
        if self._open is None:
            self._open = (self._char, self._run)
            self._stage = "rest"
        elif char not in " \t\r":
            self._stage = "rest"

    def _end_line(self) -> None:
        if self._stage in ("run", "after") and self._run >= 3:
            if self._open is None:
                self._open = (self._char, self._run)
            elif self._char == self._open[0] and self._run >= self._open[1]:
                self._open = None
        self._indent, self._char, self._run, self._stage = 0, "", 0, "indent"


class ReasoningParser:
    """Splits a streamed answer into the model's thinking and the answer proper.

    Two ways models send their thinking are understood, also mixed in one stream:

    - tags in the text: DeepSeek-R1 (and its distills), Qwen3 and QwQ write ``<think>…</think>``
      before the answer; pass each `delta.content` chunk as `content`. Chunks may split the text
      anywhere, even inside a tag: a possible partial tag (at most len(tag) - 1 characters) is held
      back until the next chunk shows what it is, so a tag never shows, not even for a moment.
    - a separate field: llama-server, LM Studio and DeepSeek's API send the thinking as
      `delta.reasoning_content` in OpenAI chat-completion chunks; pass it as `reasoning`.

    Only one thinking block, at the very start of the answer, is recognised: a ``<think>`` later on
    (in a code block, in prose about tags) is answer text. Tags are matched as models write them,
    lower-case. A ``</think>`` with no ``<think>`` before it (the chat template wrote the ``<think>``
    into the prompt, and the caller did not say so with `opened`) turns everything before it into
    thinking, unless it is inside a code fence, right after a quote or backtick, or later than
    `LONE_CLOSE_WINDOW` characters into the answer.

    Read `thinking`, `answer`, `phase` and `thought` after each `feed`: text may move from the answer
    to the thinking when such a lone ``</think>`` arrives. Feeding costs O(chunk length); reading a
    property joins the text received since the last read.

    Raises RuntimeError when fed after `finish`.
    """

    def __init__(self, *, opened: bool = False) -> None:
        """`opened`: the chat template already wrote ``<think>`` at the end of the prompt (DeepSeek-R1
        distills, Qwen3 and QwQ in some templates), so the answer starts inside the thinking block; a
        ``<think>`` the model writes again at the start is dropped."""
        self._opened = opened
        self._state = _START
        self._held = ""  # the end of the content so far, while it may be the start of a tag
        self._skipped: list[str] = []  # whitespace before the first content text: thinking if a lone close follows
        self._thinking = _Text(keep_trailing_space=False)
        self._answer = _Text(keep_trailing_space=True)
        self._thought = False
        self._watch_lone_close = not opened
        self._answer_chars = 0  # content characters seen in the answer while watching for a lone close
        self._tail = ""  # the answer's last characters, for a `<think>` split across chunks
        self._fences = _Fences()
        self._finished = False

    def feed(self, content: str = "", reasoning: str = "") -> None:
        """Adds one streamed chunk: `content` is a `delta.content` text, which may hold tags split
        anywhere; `reasoning` is a `delta.reasoning_content` text, always thinking and never searched
        for tags. Either may be empty. Raises RuntimeError after `finish`."""
        if self._finished:
            raise RuntimeError("This answer's stream has already ended; start a new ReasoningParser.")
        if reasoning:
            self._thinking.add(reasoning)
            if reasoning.strip():
                self._thought = True
                # The server keeps thinking apart: a `</think>` in the content is not the end of it.
                self._watch_lone_close = False
        if content:
            text, self._held = self._held + content, ""
            while text:
                text = self._step(text)

    def finish(self) -> None:
        """The stream ended (complete, cut at the length limit, stopped, or failed): text held back as
        a possible partial tag is released where it belongs, and a block never closed stays thinking.
        Calling it again does nothing."""
        if self._finished:
            return
        self._finished = True
        held, self._held = self._held, ""
        if not held:
            return
        if self._state == _START:
            self._state = _THINKING if self._opened else _ANSWER
            self._thought = self._thought or self._opened
        if self._state == _THINKING:
            self._thinking.add(held)
        else:
            self._add_answer(held)

    @property
    def thinking(self) -> str:
        """All thinking so far, tags removed, without leading or trailing whitespace."""
        return self._thinking.value

    @property
    def answer(self) -> str:
        """The answer so far, tags removed, without leading whitespace."""
        return self._answer.value

    @property
    def phase(self) -> str:
        """What the model is doing: "waiting" before any text but whitespace, "thinking" in a thinking
        block or while reasoning arrives, "answering" once answer text (not only whitespace) arrived."""
        if self._answer:
            return "answering"
        return "thinking" if self._thought else "waiting"

    @property
    def thought(self) -> bool:
        """Whether the model thought at all: a thinking block was seen (also an empty one), or
        reasoning text arrived."""
        return self._thought

    def _step(self, text: str) -> str:
        """Handles `text` in the current state; returns what is left for the next state."""
        if self._state == _START:
            return self._at_start(text)
        if self._state == _THINKING:
            return self._in_block(text)
        if self._watch_lone_close:
            return self._in_answer_watching(text)
        self._add_answer(text)
        return ""

    def _at_start(self, text: str) -> str:
        stripped = text.lstrip()  # whitespace before the first text is never shown
        if len(stripped) < len(text):
            self._skipped.append(text[:len(text) - len(stripped)])
        text = stripped
        if text.startswith(OPEN_TAG):
            self._enter_block()
            return text[len(OPEN_TAG):]
        if OPEN_TAG.startswith(text):
            self._held = text
            return ""
        if self._opened:
            self._enter_block()
        else:
            self._state = _ANSWER
        return text

    def _enter_block(self) -> None:
        self._state = _THINKING
        self._thought = True

    def _in_block(self, text: str) -> str:
        end = text.find(CLOSE_TAG)
        if end >= 0:
            self._thinking.add(text[:end])
            self._close_block()
            return text[end + len(CLOSE_TAG):]
        keep = _partial_tag(text, CLOSE_TAG)
        self._thinking.add(text[:len(text) - keep])
        self._held = text[len(text) - keep:]
        return ""

    def _close_block(self) -> None:
        self._state = _ANSWER
        self._thought = True
        self._watch_lone_close = False

    def _in_answer_watching(self, text: str) -> str:
        """The answer while a lone `</think>` could still end a thinking block: find one that counts,
        or hold back a possible partial one."""
        done = 0  # text[:done] is answer
        while True:
            found = text.find(CLOSE_TAG, done)
            if found < 0:
                break
            self._add_answer(text[done:found])
            done = found
            if not self._watch_lone_close:  # the window ended before this tag
                break
            if self._lone_close_counts_here():
                # Everything so far was thinking, written after a `<think>` in the prompt.
                self._thinking.add("".join(self._skipped) + self._answer.take())
                self._close_block()
                return text[found + len(CLOSE_TAG):]
            self._add_answer(CLOSE_TAG)
            done += len(CLOSE_TAG)
        rest = text[done:]
        keep = _partial_tag(rest, CLOSE_TAG)
        if keep:
            self._add_answer(rest[:len(rest) - keep])
            if self._watch_lone_close and self._lone_close_counts_here():
                self._held = rest[len(rest) - keep:]
                return ""
            rest = rest[len(rest) - keep:]
        self._add_answer(rest)
        return ""

    def _lone_close_counts_here(self) -> bool:
        """Whether a `</think>` right after the answer so far would end a thinking block."""
        if self._fences.inside:
            return False
        char_before = self._answer.last_char
        return not char_before or char_before not in _QUOTES

    def _add_answer(self, text: str) -> None:
        if not text:
            return
        self._answer.add(text)
        if self._watch_lone_close:
            self._answer_chars += len(text)
            self._fences.add(text)
            # A `<think>` in the answer (prose or an example about tags) is what a later `</think>`
            # closes; so is anything past the window.
            seen = self._tail + text
            self._tail = seen[-(len(OPEN_TAG) - 1):]
            if self._answer_chars >= LONE_CLOSE_WINDOW or OPEN_TAG in seen:
                self._watch_lone_close = False


def split(text: str, *, opened: bool = False) -> tuple[str, str]:
    """(thinking, answer) of a whole text, such as a stored answer, by the rules of `ReasoningParser`."""
    parser = ReasoningParser(opened=opened)
    parser.feed(text)
    parser.finish()
    return parser.thinking, parser.answer


def thinking_phrase(ms: float | None) -> str:
    """"Thought for 12 s" (what the window and the command line say of a finished thinking section)."""
    if ms is None:
        return "Thought"
    seconds = ms / 1000
    if seconds < 1:
        return "Thought for less than a second"
    if seconds < 60:
        return f"Thought for {seconds:.0f} s"
    return f"Thought for {int(seconds // 60)} min {seconds % 60:.0f} s"
