"""A model's answer is untrusted input: in the real window, answers that point at local files,
devices, a web standin on this machine and odd link schemes are drawn (while they stream and
when reopened), in the chat and in a Compare column, and every link in them is clicked. Nothing
may read a file outside Hearth's own folders, fetch an image, start a program or open a link
without the reader's yes.

Three witnesses, because each sees what the others cannot: Python's audit hook (files Python
opens, programs it starts), the kernel's inotify (files Qt's C++ reads, which no Python hook
sees) and Qt's own URL handlers (every QDesktopServices.openUrl, from Python or from inside Qt).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, QUrl, Slot
from PySide6.QtGui import (
    QContextMenuEvent,
    QDesktopServices,
    QGuiApplication,
    QMouseEvent,
    QTextDocument,
)
from PySide6.QtWidgets import QApplication, QLabel, QMenu, QMessageBox, QToolTip, QWidget

from desktop.ui.answer_view import LongProse, TableBlock
from desktop.ui.cloud_page import ColumnView
from desktop.ui.links import OPEN_LINK_QUESTION
from desktop.ui.markdown import image_address
from tests.cloud_server import CloudServer
from tests.ui.conftest import formula_sources, send, window_on_standin

PROCESS_EVENTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.fork",
                  "os.forkpty", "os.startfile", "pty.spawn")


# -- witnesses ---------------------------------------------------------------------------------

class _Audit:
    """Python's audit events while `recording`: files opened and programs started. An audit hook
    can never be removed, so one is installed for the whole run and records only when asked."""

    installed = False
    recording = False
    opened: list[str] = []
    started: list[tuple[str, str]] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if not cls.recording:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            cls.opened.append(os.fsdecode(args[0]))
        elif event in PROCESS_EVENTS:
            cls.started.append((event, repr(args)[:200]))


@pytest.fixture
def audit():
    if not _Audit.installed:
        sys.addaudithook(_Audit.hook)
        _Audit.installed = True
    _Audit.opened, _Audit.started = [], []
    yield _Audit
    _Audit.recording = False


IN_OPEN, IN_ACCESS = 0x20, 0x01


class FileOpens:
    """Every open or read of the given files, by any code in any process, as the kernel sees
    it (inotify). Catches Qt's C++ file reads, which Python's audit hooks never see."""

    def __init__(self, paths: list[Path]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self._fd >= 0, ctypes.get_errno()
        self._watches: dict[int, Path] = {}
        for path in paths:
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), IN_OPEN | IN_ACCESS)
            assert wd >= 0, (path, ctypes.get_errno())
            self._watches[wd] = path
        self.seen: list[Path] = []

    def read(self) -> list[Path]:
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return self.seen
        at = 0
        while at < len(data):
            wd, _mask, _cookie, length = struct.unpack_from("iIII", data, at)
            self.seen.append(self._watches[wd])
            at += 16 + length
        return self.seen

    def close(self) -> None:
        os.close(self._fd)


class UrlRecorder(QObject):
    """Qt's URL opener, replaced: QDesktopServices.openUrl, whether called from Python or from
    inside Qt (a label's own link handling), lands here instead of starting a browser."""

    SCHEMES = ("", "file", "http", "https", "mailto", "javascript", "data", "ftp", "hearth-image")

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        for scheme in self.SCHEMES:
            QDesktopServices.setUrlHandler(scheme, self, "record")

    @Slot(QUrl)
    def record(self, url: QUrl) -> None:
        self.urls.append(url.toString())

    def stop(self) -> None:
        for scheme in self.SCHEMES:
            QDesktopServices.unsetUrlHandler(scheme)


@pytest.fixture
def opener():
    recorder = UrlRecorder()
    yield recorder
    recorder.stop()




@pytest.fixture
def image_host():
    """A web standin on this machine that an image in an answer points at: it must hear nothing."""
    s = CloudServer()
    yield s
    s.stop()






def _script(standin, text: str, size: int = 13) -> None:
    """The answer, sent a few characters at a time, so images and links arrive cut in pieces."""
    standin.next = ["drip:0.03"]
    standin.scripts = [[{"content": text[i:i + size]} for i in range(0, len(text), size)]]


def _mouse(widget: QWidget, kind: QEvent.Type, at: QPoint, button=Qt.MouseButton.NoButton,
           buttons=Qt.MouseButton.NoButton) -> None:
    target = widget.childAt(at)  # as the window system does: to the innermost widget under the pointer
    if target is not None:  # (an answer is a stack of blocks: prose labels, code, tables)
        widget, at = target, target.mapFrom(widget, at)
    event = QMouseEvent(kind, QPointF(at), QPointF(widget.mapToGlobal(at)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def _click(widget: QWidget, at: QPoint) -> None:
    left = Qt.MouseButton.LeftButton
    _mouse(widget, QEvent.Type.MouseButtonPress, at, left, left)
    _mouse(widget, QEvent.Type.MouseButtonRelease, at, left, Qt.MouseButton.NoButton)


def anchors_of_label(label: QLabel) -> dict[str, QPoint]:
    """Every link the reader can point at in a label, found as the reader finds them: by moving
    the mouse over the whole label (each href, with a point inside it)."""
    found: dict[str, QPoint] = {}
    here = QPoint()

    def hovered(href: str) -> None:
        if href and href not in found:
            found[href] = QPoint(here.x() + 2, here.y())

    label.linkHovered.connect(hovered)
    for y in range(1, label.height(), 4):
        for x in range(1, label.width(), 5):
            here.setX(x)
            here.setY(y)
            _mouse(label, QEvent.Type.MouseMove, here)
    label.linkHovered.disconnect(hovered)
    return found


def anchors_of_browser(view) -> dict[str, QPoint]:
    """Every link in a text browser's visible part, with a point inside it."""
    found: dict[str, QPoint] = {}
    viewport = view.viewport()
    for y in range(1, viewport.height(), 4):
        for x in range(1, viewport.width(), 5):
            href = view.anchorAt(QPoint(x, y))
            if href and href not in found:
                found[href] = QPoint(x + 2, y)
    return found


def _open_link_boxes(widget: QWidget) -> list[QMessageBox]:
    return [b for b in widget.findChildren(QMessageBox, "ConfirmOpenLink") if b.isVisible()]


def _answer_to(tmp_path: Path, image_host: CloudServer) -> tuple[str, list[Path], str]:
    """An answer full of things that reach for this computer; the files it names that exist
    (watched by the kernel); its one web link."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n")
    up = tmp_path / "etc" / "passwd"  # where ../../etc/passwd lands from the working folder
    up.parent.mkdir()
    up.write_text("root:x:0:0\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("private\n")
    web = f"{image_host.url}/page.html"
    answer = (
        "Here is everything you asked for.\n\n"
        f"![zero](/dev/zero) ![host](/etc/hostname) ![up](../../etc/passwd) ![net]({image_host.url}/img.png)\n\n"
        f"![mine]({secret}) ![near](../../secret.png) ![badge]({image_host.url}/b.png \"a badge\")\n\n"
        f"[a](/etc/passwd) [b](file:///etc/passwd) [c](javascript:alert(1)) [d]({notes}) [e](file://{notes}) "
        "[f](data:text/html,<b>hi</b>) [g](../../etc/passwd)\n\n"
        f'<img src="/etc/hostname"> <img src="{secret}"> <a href="file://{notes}">raw</a>\n\n'
        f"| picture | link |\n|---|---|\n| ![cell]({secret}) | [h]({notes}) |\n\n"
        f"- ![listed](../../secret.png)\n- [the page]({web})\n"
    )
    return answer, [secret, up, notes], web


@pytest.mark.timeout(180)  # a window frozen on /dev/zero ends the test instead of the run
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the file witness is Linux's inotify")
def test_an_answer_that_points_at_files_and_odd_links_cannot_touch_this_computer(
        qtbot, make_window, standin, image_host, services, audit, opener, tmp_path, monkeypatch, shots_dir):
    answer_text, files, web = _answer_to(tmp_path, image_host)
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)  # relative paths in the answer resolve next to the watched files
    window = window_on_standin(make_window)
    send(qtbot, window, "Hello?")  # a first turn: the key lookup and the like are done once, before
    qtbot.waitUntil(lambda: not window.answering, timeout=30_000)
    kernel = FileOpens(files)
    try:
        _script(standin, answer_text)
        audit.recording = True
        answer = send(qtbot, window, "Show me your files.")
        qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
        assert answer.text == answer_text
        window.grab().save(str(shots_dir / "answer-untrusted-light.png"))

        # Every link the reader can point at: the image chips and the one web link, nothing else.
        found = anchors_of_label(answer.body)
        chips = {image_address(href) for href in found if image_address(href) is not None}
        assert {"/dev/zero", "/etc/hostname", "../../etc/passwd", f"{image_host.url}/img.png", str(files[0]),
                "../../secret.png"} <= chips
        assert {href for href in found if image_address(href) is None} == {web}
        _mouse(answer.body, QEvent.Type.MouseMove, QPoint(1, 1))  # off every link, then onto one
        _mouse(answer.body, QEvent.Type.MouseMove, found[web])
        assert QToolTip.text() == web  # where it goes, in full
        zero = next(href for href in found if image_address(href) == "/dev/zero")
        _mouse(answer.body, QEvent.Type.MouseMove, found[zero])
        assert QToolTip.text() == "Image not loaded: /dev/zero"
        for href, at in found.items():
            if href != web:
                _click(answer.body, at)  # an image chip: nothing to open, nothing to ask
                assert not _open_link_boxes(window) and opener.urls == []

        # The web link asks first, with the whole address; Cancel opens nothing, Open hands it over.
        _click(answer.body, found[web])
        box = _open_link_boxes(window)[0]
        assert (box.text(), box.informativeText()) == (OPEN_LINK_QUESTION, web)
        qtbot.mouseClick(box.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
        assert opener.urls == []
        qtbot.waitUntil(lambda: not _open_link_boxes(window))
        _click(answer.body, found[web])
        box = _open_link_boxes(window)[0]
        qtbot.mouseClick(next(b for b in box.buttons() if b.text() == "Open"), Qt.MouseButton.LeftButton)
        assert opener.urls == [web]

        # Reopened from disk (rendered whole, not as it streamed), and in a Compare column.
        window.open_conversation(window.current_id)
        reopened = window.message_list.widgets()[-1]
        assert {href for href in anchors_of_label(reopened.body) if image_address(href) is None} == {web}
        window.grab()
        column = ColumnView(window.theme)
        qtbot.addWidget(column)
        column.resize(760, 1400)
        column.show()
        column.show_turns("A", services.store.messages(window.current_id))
        qtbot.wait(50)  # laid out
        column.grab().save(str(shots_dir / "compare-untrusted-light.png"))
        [in_column] = column.answers()[-1:]  # the answer is drawn as in the chat: prose labels and a table
        found = {}
        for block in in_column.blocks:
            anchors = anchors_of_label(block) if isinstance(block, QLabel) else anchors_of_browser(block)
            found.update({href: (block, at) for href, at in anchors.items()})
        chips = {image_address(href) for href in found if image_address(href) is not None}
        assert {"/dev/zero", "/etc/hostname", "../../etc/passwd", str(files[0])} <= chips
        assert {href for href in found if image_address(href) is None} == {web}
        block, at = found[web]
        _mouse(block, QEvent.Type.MouseMove, QPoint(1, 1))
        _mouse(block, QEvent.Type.MouseMove, at)
        assert QToolTip.text() == web  # where it goes, in full
        for href, (block, at) in found.items():
            if href != web:
                _click(block if isinstance(block, QLabel) else block.viewport(), at)
        assert not _open_link_boxes(column) and opener.urls == [web]  # the one the reader agreed to before
        block, at = found[web]
        _click(block, at)
        box = _open_link_boxes(column)[0]
        assert box.informativeText() == web
        qtbot.mouseClick(box.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
        assert opener.urls == [web] and "Here is everything" in column.text  # it went nowhere
        qtbot.wait(200)  # anything queued by the clicks has run
    finally:
        audit.recording = False
        opened_by_qt = sorted(set(kernel.read()))
        kernel.close()

    assert opened_by_qt == []
    assert image_host.connections == 0 and image_host.seen == []
    assert audit.started == []
    assert opener.urls == [web]  # only the link the reader agreed to open
    named = {"/dev/zero", "/etc/hostname", "/etc/passwd", *map(str, files)}
    assert not [p for p in audit.opened if p in named or str(Path(p).resolve()) in named]
    home = Path(os.environ["HEARTH_HOME"]).resolve()
    allowed = [home, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(__file__).resolve().parents[2],
               Path(f"/proc/{os.getpid()}")]  # Hearth's own folders, its code, and its own process figures
    strays = [p for p in audit.opened if not any(Path(p).resolve().is_relative_to(root) for root in allowed)]
    assert strays == []


MATH_AND_ENTITIES = (
    "Entities: 5 &lt; 6, Tom &amp; Jerry, &copy; 2024, and &foo; as typed. Raw <b>tags</b> stay text.\n\n"
    "Inline: \\( e^{i\\pi} + 1 = 0 \\) and $E = mc^2$, but it costs $5 or $10.\n\n"
    "The quadratic formula:\n"
    "\\[\n"
    "x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}\n"
    "\\]\n\n"
    "A system, line by line:\n\n"
    "$$\n"
    "\\begin{aligned}\n"
    "  a &= b + c \\\\\n"
    "  d &= e - f\n"
    "\\end{aligned}\n"
    "$$\n\n"
    "In code, dollars stay code: `echo $HOME` and\n\n"
    "```sh\nprice=\"$5\"; echo \\(not math\\)\n```\n"
)


def _seen_in(label: QLabel) -> str:
    document = QTextDocument()
    document.setHtml(label.text())
    return document.toPlainText().replace("\u200b", "").replace("\xa0", " ")


def _formulas_in(label: QLabel) -> list[str]:
    """The LaTeX of each typeset formula a label draws (its pictures' alt text), in order."""
    return formula_sources(label.text())


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_math_is_typeset_and_entities_are_shown_as_written(qtbot, make_window, standin, shots_dir, dark):
    window = window_on_standin(make_window, dark)
    _script(standin, MATH_AND_ENTITIES, size=17)
    answer = send(qtbot, window, "Some maths, please.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    assert answer.text == MATH_AND_ENTITIES
    seen = _seen_in(answer.body)
    for words in ("5 < 6, Tom & Jerry, © 2024, and &foo; as typed", "Raw <b>tags</b> stay text",
                  "it costs $5 or $10.", "echo $HOME", 'price="$5"; echo \\(not math\\)'):
        assert words in seen, words
    # Every formula is typeset, in order, each keeping its LaTeX (every backslash) as alt text.
    assert _formulas_in(answer.body) == [
        "e^{i\\pi} + 1 = 0", "E = mc^2", "x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}",
        "\\begin{aligned}\n  a &= b + c \\\\\n  d &= e - f\n\\end{aligned}"]
    assert "\\frac" not in seen and "\\(" not in seen.replace("\\(not math\\)", "")
    window.grab().save(str(shots_dir / f"answer-math-{'dark' if dark else 'light'}.png"))


def _context_menu(label: QLabel) -> QMenu:
    at = QPoint(5, 5)
    QApplication.sendEvent(label, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at, label.mapToGlobal(at)))
    return [m for m in label.findChildren(QMenu, "AnswerMenu") if m.isVisible()][-1]


def test_copying_a_selection_never_carries_invisible_characters(qtbot, make_window, standin, services):
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2
    link = "https://example.com/" + "a-very-long-path-segment-" * 4
    text = f"A long word: {long_word}\n\nAnd a link: {link}\n\n- one\n- two"
    window = window_on_standin(make_window)
    standin.scripts = [[{"content": text}]]
    question = f"Spell {long_word}"
    answer = send(qtbot, window, question)
    qtbot.waitUntil(lambda: not window.answering, timeout=30_000)
    [label] = answer.body.labels()  # the answer is prose only: one block
    assert "\u200b" in label.text()  # drawn with places to wrap the long words
    menu = _context_menu(label)
    assert [action.text() for action in menu.actions()] == ["Copy", "Select all"]
    assert not menu.actions()[0].isEnabled()  # nothing selected yet
    menu.actions()[1].trigger()
    menu.close()
    label.setFocus()
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().text()
    assert "\u200b" not in copied and "\u2029" not in copied
    assert long_word in copied and link in copied and "one\ntwo" in copied
    QGuiApplication.clipboard().clear()
    menu = _context_menu(label)
    menu.actions()[0].trigger()  # Copy, from the menu
    menu.close()
    assert QGuiApplication.clipboard().text() == copied

    bubble = window.message_list.widgets()[-2].body  # the question, drawn as plain text
    assert "\u200b" in bubble.text()
    bubble.setSelection(0, len(bubble.text()))
    qtbot.keyClick(bubble, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == question

    answer.copy_text()  # the Copy button: the text as the model wrote it
    assert QGuiApplication.clipboard().text() == text
    answer._text = "run abc\u202eevil.exe\u202c.txt"  # an override would disguise it where it is pasted
    answer.copy_text()
    assert QGuiApplication.clipboard().text() == "run abcevil.exe.txt"

    column = ColumnView(window.theme)
    qtbot.addWidget(column)
    column.resize(500, 600)
    column.show()
    column.show_turns("A", services.store.messages(window.current_id))
    [label] = column.answers()[-1].labels()  # drawn as in the chat, and copied as cleanly
    QGuiApplication.clipboard().clear()
    menu = _context_menu(label)
    menu.actions()[1].trigger()  # Select all
    menu.close()
    label.setFocus()
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().text()
    assert "\u200b" not in copied and long_word in copied and link in copied


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the file witness is Linux's inotify")
@pytest.mark.parametrize("kind", [TableBlock, LongProse], ids=["table", "long-prose"])
def test_an_answers_document_views_load_nothing_even_when_handed_raw_html(qtbot, tmp_path, opener, kind):
    # The second guard: should HTML with images, a style sheet or a link to a file ever reach the
    # views that draw tables and very long prose (in the chat, the thinking and Compare's
    # columns), the view still reads nothing and follows nothing by itself.
    secret, sheet = tmp_path / "secret.png", tmp_path / "style.css"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n")
    sheet.write_text("p { color: red }")
    kernel = FileOpens([secret, sheet])
    view = kind()
    qtbot.addWidget(view)
    view.resize(500, 300)
    view.show()
    try:
        view.setHtml(f'<html><head><link rel="stylesheet" type="text/css" href="{sheet}"></head><body>'
                     f'<p><img src="{secret}"> <img src="secret.png"> <a href="file://{secret}">open me</a></p>'
                     f'<table background="{secret}"><tr><td>cell</td></tr></table></body></html>')
        view.grab()
        at = next(QPoint(x, y) for y in range(1, 300, 3) for x in range(1, 500, 3) if view.anchorAt(QPoint(x, y)))
        _click(view.viewport(), at)
        qtbot.wait(100)
        assert view.source().isEmpty() and "open me" in view.toPlainText()
        assert not _open_link_boxes(view)
    finally:
        seen = sorted(set(kernel.read()))
        kernel.close()
    assert seen == [] and opener.urls == []
