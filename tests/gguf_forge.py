"""Writes small GGUF files for tests: a valid header with chosen metadata and tensors."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _value(value: Any) -> bytes:
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(v) for v in value)
    raise TypeError(value)


def write_gguf(path: Path, metadata: dict[str, Any], tensors: list[tuple[str, list[int], int]] = (),
               *, version: int = 3, write_data: bool = True, size: int | None = None) -> Path:
    """tensors: (name, dims, ggml type); F32 (0) data is written as zeros, packed one after another.
    `size` makes the file that long (sparse), whatever the tensors need."""
    header = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, value in metadata.items():
        header += _string(key) + _value(value)
    offset = 0
    data_sizes = []
    for name, dims, ttype in tensors:
        header += _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        header += struct.pack("<IQ", ttype, offset)
        count = 1
        for d in dims:
            count *= d
        nbytes = count * 4
        data_sizes.append(nbytes)
        offset += (nbytes + 31) // 32 * 32
    header += b"\0" * ((32 - len(header) % 32) % 32)
    with open(path, "wb") as fh:
        fh.write(header)
        if write_data:
            for nbytes in data_sizes:
                fh.write(b"\0" * nbytes + b"\0" * ((32 - nbytes % 32) % 32))
        if size is not None:
            fh.truncate(size)
    return path
