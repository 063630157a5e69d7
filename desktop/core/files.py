"""Writing Hearth's own files safely: the whole new file or the old one, never half of either.

Each write goes to a temporary file with a unique name beside the target, is flushed to disk,
then renamed over the target. Two processes saving the same file (the app and a `hearth`
command) each rename their own temporary file, so neither breaks the other's save.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8). On any failure the previous file
    is left as it was and no temporary file stays behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as tmp:
        try:
            tmp.write(raw)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
            raise
    try:
        _replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise


def write_json(path: Path, value: Any, *, indent: int | None = 2) -> None:
    """`value` as JSON in `path`, atomically. A value that cannot be written as JSON raises
    before anything on disk is touched."""
    write_atomic(path, json.dumps(value, indent=indent))


def _replace(src: str, dest: Path) -> None:
    # On Windows a rename over a file another process has open for reading fails for a moment.
    tries = 10 if sys.platform == "win32" else 1
    for attempt in range(1, tries + 1):
        try:
            os.replace(src, dest)
            return
        except PermissionError:
            if attempt == tries:
                raise
            time.sleep(0.02 * attempt)
