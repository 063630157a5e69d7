"""About Hearth: the version, the llama.cpp build it carries and whether a GPU was found, where
the data lives, and the licences of what the app bundles."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QTableWidgetItem, QVBoxLayout

from desktop import __version__
from desktop.core import hardware, runtime
from desktop.core.paths import resources_dir
from desktop.core.units import human_bytes
from desktop.ui.icons import app_icon
from desktop.ui.widgets import data_table, muted


def engine_line() -> str:
    return f"llama.cpp from llama-cpp-python {runtime.llama_cpp_version()} · {runtime.backend()} build"


def gpu_line() -> str:
    found = hardware.gpus()
    if found:
        return "GPU: " + ", ".join(f"{g.name} ({human_bytes(g.free)} free of {human_bytes(g.total)})" for g in found)
    if runtime.backend() == "CPU":
        return "GPU: not used (this build runs on the CPU; GPU builds: CUDA, Vulkan, Metal)"
    return f"GPU: none found for the {runtime.backend()} build, so models run on the CPU"


def licenses_folder() -> Path | None:
    """The bundled licence texts: next to the frozen app (packaging/build.py puts them there)."""
    if getattr(sys, "frozen", False):
        folder = Path(sys.executable).resolve().parent / "licenses"
        return folder if folder.is_dir() else None
    return None


class AboutDialog(QDialog):
    def __init__(self, data_folder: Path, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("AboutDialog")
        self.setWindowTitle("About Hearth")
        self.resize(560, 560)
        column = QVBoxLayout(self)
        column.setContentsMargins(18, 16, 18, 14)
        column.setSpacing(6)
        head = QHBoxLayout()
        head.setSpacing(12)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(56, 56))
        head.addWidget(logo)
        title = QLabel(f"Hearth {__version__}")
        title.setObjectName("PageTitle")
        heading = QVBoxLayout()
        heading.addWidget(title)
        heading.addWidget(muted("Private, local chat with open models.", wrap=False))
        head.addLayout(heading, 1)
        column.addLayout(head)
        column.addSpacing(6)
        self.engine = QLabel(engine_line())
        self.gpu = QLabel(gpu_line())
        self.gpu.setWordWrap(True)
        column.addWidget(self.engine)
        column.addWidget(self.gpu)
        column.addWidget(muted(f"Python {platform.python_version()} · Qt {pyside_version} (PySide6) · "
                               f"{platform.system()} {platform.machine()}", wrap=False))
        data = muted(f"Your chats, models and settings: {data_folder}")
        data.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column.addWidget(data)

        column.addSpacing(8)
        heading = QLabel("What Hearth is built from")
        heading.setObjectName("CardTitle")
        column.addWidget(heading)
        components = json.loads((resources_dir() / "licenses.json").read_text(encoding="utf-8"))["components"]
        self.licenses = data_table(["Part", "Licence"], "Licenses")
        self.licenses.setRowCount(len(components))
        for row, c in enumerate(components):
            self.licenses.setItem(row, 0, QTableWidgetItem(c["name"]))
            self.licenses.setItem(row, 1, QTableWidgetItem(c["license"]))
        column.addWidget(self.licenses, 1)
        texts = licenses_folder()
        column.addWidget(muted(
            (f"The full licence texts are in {texts}. " if texts else "")
            + "Qt is used under the LGPL: its libraries are separate files in the app's folder, which you may "
              "replace with your own build. Models carry their own licences, shown in Models › Installed "
              "(the starter model, SmolLM2-135M-Instruct, is Apache-2.0)."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        column.addWidget(buttons)
