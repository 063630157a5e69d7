"""Start-up: from launching `hearth` to its main window drawn on screen, against the floor: a bare
PySide6 window started by the same Python, timed the same way (once its first drawing is done).
Runs interleave; prints medians and the ratio, and which heavy modules (llama_cpp,
huggingface_hub, anthropic, …) were already imported when the window showed (the answer should
be none). Also when the parts Hearth builds after the first drawing (settings panel, model
manager, Compare) are ready.

The Hearth runs use a data folder with the starter model installed and a 200-message chat open,
as a returning user's would be.

Usage: python tests/bench/startup.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import machine_line, median, row, save  # noqa: E402

BARE = """
import os, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv)
window = QMainWindow()
window.resize(1180, 760)
def shown():
    print(f"shown after {time.time() - float(os.environ['HEARTH_LAUNCHED_AT']):.3f} s", flush=True)
    app.quit()
class FirstPaint(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.Type.Paint:
            window.removeEventFilter(self)
            QTimer.singleShot(0, shown)
        return False
probe = FirstPaint()
window.installEventFilter(probe)
window.show()
app.exec()
"""


def returning_user(home: Path) -> None:
    """A data folder as a returning user has it: the starter model, and a long chat to reopen."""
    from tests.bench.stream import starter_model

    os.environ["HEARTH_HOME"] = str(home)
    from desktop.core.services import open_services

    services = open_services()
    services.library.import_file(starter_model(), link=True)
    conversation = services.store.create_conversation(title="Yesterday's chat")
    for i in range(100):
        services.store.add_message(conversation.id, "user", f"Question {i}: how does a heat pump work in winter?")
        services.store.add_message(conversation.id, "assistant", "A heat pump moves heat rather than making it. " * 8,
                                   model="SmolLM2-135M-Instruct", provider="local", processed_on="this machine")
    services.close()


def launch(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds to the window drawn, to every page ready (the same for the bare window), and the
    heavy modules imported by the time the window was drawn."""
    env = dict(env, HEARTH_LAUNCHED_AT=repr(time.time()))
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    match = re.search(r"shown after ([\d.]+) s(?:; ready after ([\d.]+) s; heavy modules loaded: (.*))?", out)
    if match is None:
        raise RuntimeError(f"no timing in: {out!r}")
    shown = float(match.group(1))
    return shown, float(match.group(2) or shown), (match.group(3) or "").strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one run each, nothing saved (smoke test)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    # An installed Hearth has its modules compiled to bytecode (pip and PyInstaller do it); a
    # checkout run with PYTHONDONTWRITEBYTECODE would compile them again at every launch.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "desktop")], check=True)
    home = Path(tempfile.mkdtemp(prefix="hearth-startup-"))
    returning_user(home)
    env = dict(os.environ, HEARTH_HOME=str(home), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    hearth, ready, bare, heavy = [], [], [], set()
    for _ in range(runs):
        seconds, all_ready, loaded = launch([sys.executable, "-m", "desktop", "--quit-when-shown"], env)
        hearth.append(seconds)
        ready.append(all_ready)
        heavy.add(loaded)
        bare.append(launch([sys.executable, "-c", BARE], env)[0])
    h, r, b = median(hearth), median(ready), median(bare)
    print(machine_line())
    print(f"Window drawn on screen after launch, {runs} interleaved runs each (medians)")
    print(f"{'':34}{'bare Qt':>10}{'Hearth':>10}{'ratio':>8}  target")
    print(f"{'start-up, s':34}{b:>10.3f}{h:>10.3f}{h / b:>8.2f}  <= 1.5 x and < 1 s")
    print(f"{'every page built, s':34}{b:>10.3f}{r:>10.3f}{r / b:>8.2f}")
    print(f"heavy modules loaded before the window showed: {', '.join(sorted(heavy))}")
    heavy_names = ", ".join(sorted(heavy))
    rows = [row("Start-up to the window drawn, s", h, b, reference_name="bare PySide6 window",
                target="≤ 1.5 × and < 1 s", met=h / b <= 1.5 and h < 1.0, digits=3),
            row("… and the hidden pages built after it, s", r, b, reference_name="bare PySide6 window", digits=3),
            {**row("Heavy modules imported before the window shows", float("nan"), target="none",
                   met=heavy_names == "none"), "hearth": heavy_names}]
    save("startup", {"runs": runs, "hearth_s": hearth, "ready_s": ready, "bare_qt_s": bare,
                     "hearth_median_s": round(h, 3), "ready_median_s": round(r, 3), "bare_median_s": round(b, 3),
                     "ratio": round(h / b, 3), "heavy_modules_before_window": sorted(heavy)}, rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
