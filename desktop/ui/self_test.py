"""`hearth gui --self-test`: open the window, load a model, generate a few tokens, exit 0 on success.

Used to check an installed or packaged Hearth on a machine with no screen.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass, replace

from PySide6.QtWidgets import QApplication

from desktop.core.settings import Sampling


@dataclass
class SelfTestResult:
    code: int = 1


def schedule_self_test(window) -> SelfTestResult:
    result = SelfTestResult()

    async def run() -> None:
        services = window.services
        try:
            missing = await _renderer_parts_missing()
            if missing:
                print(f"self-test: failed: answers cannot be drawn in full ({missing} missing)", file=sys.stderr)
                return
            if problem := _document_search_problem():
                print(f"self-test: failed: document search cannot work ({problem})", file=sys.stderr)
                return
            if not services.library.models():
                print("self-test: no model is installed", file=sys.stderr)
                return
            conversation = services.chat.new_conversation(model_id=window.selected_model_id())
            sampling = replace(Sampling.from_dict(conversation.sampling), max_tokens=8, seed=1)
            services.store.update_conversation(conversation.id, sampling=asdict(sampling))
            window.open_conversation(conversation.id)
            window.send("Say hello.")
            while window.answering:
                await asyncio.sleep(0.05)
            answer = services.store.messages(conversation.id)[-1]
            services.store.delete_conversation(conversation.id)
            if answer.role == "assistant" and answer.status == "complete" and answer.content:
                print(f"self-test: ok, {answer.tokens_out} tokens from {answer.model}")
                result.code = 0
            else:
                print(f"self-test: failed: {answer.error or 'no answer'}", file=sys.stderr)
        finally:
            window.close()
            QApplication.instance().quit()

    asyncio.get_event_loop().call_soon(lambda: asyncio.ensure_future(run()))
    return result


def _document_search_problem() -> str:
    """Why the documents database cannot work in this build ("" when it can): apsw's SQLite with
    FTS5 and sqlite-vec's vec0 extension, which an installer must carry as a library."""
    import tempfile
    from pathlib import Path

    try:
        from desktop.core.docs import Draft
        from desktop.core.docs.index import DocumentIndex

        with tempfile.TemporaryDirectory() as folder:
            index = DocumentIndex(f"{folder}/documents.db")
            try:
                source = Path(folder) / "self-test.txt"  # a file that exists: search drops files that are gone
                source.write_text("hearth self test\n", encoding="utf-8")
                index.add([source], "self-test")
                [entry] = index.files("self-test")
                index.store(entry.id, [Draft("hearth self test", None, "", 0)], pages=0, size=entry.size,
                            mtime=entry.mtime, vectors=[[1.0, 0.0]], model="self-test")
                found = index.search("self test", vector=[1.0, 0.0])
            finally:
                index.close()
        return "" if found.mode == "hybrid" and found.passages else "no passage found"
    except Exception as exc:  # noqa: BLE001 - any failure here is what the self-test reports
        return str(exc) or type(exc).__name__


async def _renderer_parts_missing() -> str:
    """What of the answer renderer this build lacks ("" when nothing): pygments' lexers (code
    colours) and the math typesetter with its fonts, which an installer must carry as data."""
    from desktop.ui import math_render
    from desktop.ui.markdown import highlighted_html

    missing = []
    if not (highlighted_html("def f():\n    return 1\n", "python", "#ffffff") or "").count("<span"):
        missing.append("code colours")
    for _ in range(100):  # the first formula imports the typesetter (~0.3 s): wait for it, 5 s at most
        if math_render.render("E = mc^2", False, "#000000", 16.0, 4.0, 1.0) is not None:
            break
        await asyncio.sleep(0.05)
    else:
        missing.append("math typesetting")
    return ", ".join(missing)
