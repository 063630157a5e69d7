"""Render the README's screenshots from a real session: the starter model answers real prompts in
the real window (offscreen), then the window is saved as PNG. Nothing in the picture is staged.

Usage: python tools/screenshot.py OUT_DIR
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = ("Write a Python function that reverses a string, in a code block.",
           "Give me three tips for a cosy evening at home, as a list.")


def main(out: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-shot-")
    import qasync
    from PySide6.QtWidgets import QApplication

    from desktop.core.services import open_services
    from desktop.core.settings import Sampling
    from desktop.ui.icons import app_icon
    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    model_path = Path(os.environ.get("HEARTH_STARTER_MODEL") or
                      Path.home() / ".cache/hearth-build/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    app = QApplication([])
    app.setWindowIcon(app_icon())
    services = open_services()
    services.library.import_file(model_path, link=True)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    out.mkdir(parents=True, exist_ok=True)

    async def session(dark: bool, name: str) -> None:
        window = MainWindow(services, apply_theme(app, dark=dark), preload_model=False)
        window.resize(1200, 760)
        window.show()
        if not services.store.messages(window.current_id):
            sampling = replace(Sampling(), temperature=0.2, seed=11, max_tokens=160)
            services.store.update_conversation(window.current_id, sampling=asdict(sampling))
            for prompt in PROMPTS:
                window.send(prompt)
                while window.answering:
                    await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        window.grab().save(str(out / name))
        window.close()

    with loop:
        loop.run_until_complete(session(False, "screenshot.png"))
        loop.run_until_complete(session(True, "screenshot-dark.png"))
    services.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
