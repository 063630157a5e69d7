"""The app icon in the formats installers want, rendered from resources/icons/hearth.svg with Qt:
PNGs at the usual sizes (Linux menus), hearth.ico (Windows) and hearth.icns (macOS).

Usage: python packaging/icons.py   (rewrites resources/icons/png/*, hearth.ico and hearth.icns)
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "hearth.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(size: int):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    QGuiApplication.instance() or QGuiApplication([])  # Qt wants one before it paints
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(SVG)).render(painter)
    painter.end()
    return image


def pngs(folder: Path) -> dict[int, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for size in PNG_SIZES:
        paths[size] = folder / f"hearth-{size}.png"
        render(size).save(str(paths[size]))
    return paths


PNG_FOLDER = ROOT / "resources" / "icons" / "png"


def main() -> None:
    pngs(PNG_FOLDER)
    for name, size, fmt in (("hearth.ico", 256, "ICO"), ("hearth.icns", 512, "ICNS")):
        target = ROOT / "resources" / "icons" / name
        if not render(size).save(str(target), fmt):
            raise SystemExit(f"Qt could not write {target.name}")
        print(f"{target.relative_to(ROOT)}  {target.stat().st_size} bytes")


if __name__ == "__main__":
    main()
