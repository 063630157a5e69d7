"""desktop/core must run without Qt: import every core module with PySide6 made unimportable."""

import subprocess
import sys
from pathlib import Path

import desktop.core

BLOCK_QT = """
import importlib, importlib.abc, pkgutil, sys
class NoQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6', 'qasync', 'PyQt5', 'PyQt6'):
            raise ImportError('Qt is not allowed in desktop.core: ' + name)
        return None
sys.meta_path.insert(0, NoQt())
import desktop.core
for info in pkgutil.walk_packages(desktop.core.__path__, 'desktop.core.'):
    importlib.import_module(info.name)
    print(info.name.removeprefix('desktop.core.'))
"""


def test_every_core_module_imports_with_qt_blocked():
    result = subprocess.run([sys.executable, "-c", BLOCK_QT], capture_output=True, text=True,
                            cwd=Path(desktop.core.__file__).parents[2])
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    core = Path(desktop.core.__file__).parent
    on_disk = {".".join(p.relative_to(core).with_suffix("").parts).removesuffix(".__init__")
               for p in core.rglob("*.py") if p != core / "__init__.py"}
    assert imported == on_disk


def test_the_qt_blocker_really_blocks():
    probe = BLOCK_QT.split("import desktop.core")[0] + "import PySide6\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Qt is not allowed" in result.stderr
