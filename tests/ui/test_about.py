"""About Hearth: version, the llama.cpp build inside and whether a GPU was found, licences."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from desktop import __version__
from desktop.core import runtime


def test_about_says_which_llama_cpp_build_it_carries_and_what_it_is_made_of(qtbot, make_window, shots_dir):
    window = make_window()
    qtbot.mouseClick(window.about_button, Qt.MouseButton.LeftButton)
    dialog = window.findChild(QDialog, "AboutDialog")
    qtbot.waitExposed(dialog)
    assert dialog.findChild(type(dialog.engine), "PageTitle").text() == f"Hearth {__version__}"
    assert dialog.engine.text() == (f"llama.cpp from llama-cpp-python {runtime.llama_cpp_version()} · "
                                    f"{runtime.backend()} build")
    if runtime.backend() == "CPU":
        assert dialog.gpu.text().startswith("GPU: not used (this build runs on the CPU")
    rows = {dialog.licenses.item(r, 0).text(): dialog.licenses.item(r, 1).text()
            for r in range(dialog.licenses.rowCount())}
    assert rows["Qt 6 (inside PySide6-Essentials)"] == "LGPL-3.0-only"
    assert rows["llama.cpp and ggml (inside llama-cpp-python)"] == "MIT" and rows["Hearth"] == "MIT"
    dialog.grab().save(str(shots_dir / "about.png"))
