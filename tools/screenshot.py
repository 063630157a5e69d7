"""Render the README's screenshots from a real session: the starter model answers real prompts in
the real window (offscreen), then the window is saved as PNG. Nothing in the picture is staged.

The compare view puts the starter model beside the cloud stand-in from the tests (a fixed answer
over the real OpenAI protocol, on this machine's network address), since the shot must not depend
on a paid account.

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

    async def comparison(name: str) -> None:
        from desktop.core import secrets
        from tests.cloud_server import CloudServer, network_address

        server = CloudServer(host=network_address() or "127.0.0.1")
        services.providers.add("openai", base_url=server.url + "/v1")
        secrets.put("openai", "sk-screenshot")
        services.providers.set_models("openai", ["gpt-4o-mini"])
        window = MainWindow(services, apply_theme(app, dark=False), preload_model=False)
        window.resize(1200, 760)
        window.show()
        window.show_cloud()
        page = window.cloud_page
        page.pickers[0].setCurrentIndex(page.pickers[0].findData(services.library.models()[0].id))
        page.pickers[1].setCurrentIndex(page.pickers[1].findData("openai/gpt-4o-mini"))
        page.ask("What is the capital of France? One sentence.")
        while page.busy:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        window.grab().save(str(out / name))
        window.close()
        server.stop()

    with loop:
        loop.run_until_complete(session(False, "screenshot.png"))
        loop.run_until_complete(session(True, "screenshot-dark.png"))
        loop.run_until_complete(comparison("compare.png"))
    services.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
