"""Read and check a GGUF file's header and metadata without loading the model.

The checks here catch the common broken files (not a GGUF, cut short, an old or unknown
format) with a sentence a person understands, before llama.cpp ever sees the file.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop.core.errors import HearthError
from desktop.core.units import human_bytes

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Arrays longer than this (token lists, merges) are summarised by their length only.
SMALL_ARRAY = 64
# No metadata string or array in a real GGUF comes near these: a longer one is a damaged header
# (a flipped bit in a length), not a file cut short. Chat templates are tens of KB; the largest
# vocabularies have ~260k tokens.
LONGEST_STRING = 16 * 1024 * 1024
LONGEST_ARRAY = 64 * 1024 * 1024
# Tokens that look like chat markup (`<|im_start|>`, `<start_of_turn>`, `[INST]`, `<｜User｜>`):
# kept by text so the chat format can be told from the vocabulary when a file has no template.
MARKUP_TOKEN_MAX = 40
TOKENS_KEY = "tokenizer.ggml.tokens"
LARGEST_TENSOR = 1 << 44  # elements or bytes: 16 T, far beyond any model a laptop could hold

# GGML tensor types: id -> (name, elements per block, bytes per block).
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}
# Types llama.cpp once had and has since removed: files using them no longer load.
RETIRED_TYPES = {4: "Q4_2", 5: "Q4_3", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
                 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8"}

# general.file_type -> the quantization name people use.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}

# Metadata value types: id -> struct format (None for string and array).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(HearthError):
    """A file that is not a usable GGUF model; str() is a sentence for the user."""


class NotGGUFError(GGUFError):
    pass


class TruncatedError(GGUFError):
    pass


class UnsupportedGGUFError(GGUFError):
    pass


@dataclass(frozen=True)
class ArraySummary:
    """A long metadata array, kept as its length only."""

    item_type: int
    length: int


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    version: int
    file_size: int
    expected_size: int
    tensor_count: int
    parameters: int
    tensor_types: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Vocabulary entries that look like chat markup: token text -> id (see MARKUP_TOKEN_MAX).
    markup_tokens: dict[str, int] = field(default_factory=dict)

    def _arch_value(self, key: str) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        if self.tensor_types:  # the most common type among the tensors
            return max(self.tensor_types, key=self.tensor_types.__getitem__)
        return ""

    @property
    def context_length(self) -> int:
        value = self._arch_value("context_length")
        return int(value) if isinstance(value, int) else 0

    @property
    def license(self) -> str:
        return str(self.metadata.get("general.license", ""))

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template.strip())

    @property
    def chat_template(self) -> str:
        """The Jinja chat template the file carries (`tokenizer.chat_template`), or ""."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else ""

    @property
    def layers(self) -> int:
        value = self._arch_value("block_count")
        return int(value) if isinstance(value, int) else 0

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Size of an f16 KV cache for `n_ctx` tokens, from the attention shape in the metadata."""
        embd = self._arch_value("embedding_length")
        heads = self._arch_value("attention.head_count")
        kv_heads = self._arch_value("attention.head_count_kv") or heads
        if not all(isinstance(v, int) and v > 0 for v in (embd, heads, kv_heads)) or not self.layers:
            return 0
        key_dim = self._arch_value("attention.key_length") or embd // heads
        value_dim = self._arch_value("attention.value_length") or embd // heads
        return n_ctx * self.layers * kv_heads * (key_dim + value_dim) * 2


_MARKUP_FIRST = frozenset(b"<[")


def _is_markup(raw: bytes) -> bool:
    return (len(raw) <= MARKUP_TOKEN_MAX * 3 and raw[:1] in (b"<", b"[") and raw[-1:] in (b">", b"]")
            and not raw.startswith(b"<0x"))  # byte tokens (<0x0A>) are not markup


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes, size: int, path: Path) -> None:
        self.buf, self.size, self.pos, self.path = buf, size, 0, path
        self.markup: dict[str, int] = {}

    def damaged(self, what: str) -> GGUFError:
        return GGUFError(f"“{self.path.name}” is damaged: {what}. The file was changed after it was made "
                         "(a disk or copy error); download it again.")

    def _need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise TruncatedError(
                f"“{self.path.name}” ends early: it is {human_bytes(self.size)} and its header "
                "alone needs more. It was probably not copied or downloaded completely."
            )

    def scalar(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        self._need(n)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        length = self.scalar("<Q")
        if length > LONGEST_STRING:
            raise self.damaged(f"its header claims a text of {human_bytes(length)}")
        self._need(length)
        raw = bytes(self.buf[self.pos:self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, *, keep_markup: bool = False) -> None:
        for index in range(count):
            length = self.scalar("<Q")
            if length > LONGEST_STRING:
                raise self.damaged(f"its header claims a text of {human_bytes(length)}")
            self._need(length)
            if keep_markup and 2 < length <= MARKUP_TOKEN_MAX * 3 and self.buf[self.pos] in _MARKUP_FIRST:
                raw = bytes(self.buf[self.pos:self.pos + length])
                if _is_markup(raw):
                    self.markup[raw.decode("utf-8", errors="replace")] = index
            self.pos += length

    def value(self, vtype: int, key: str = "") -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.scalar("<I")
            count = self.scalar("<Q")
            if count > LONGEST_ARRAY:
                raise self.damaged(f"its header claims a list of {count:,} values")
            if count <= SMALL_ARRAY and key != TOKENS_KEY:
                return [self.value(item_type) for _ in range(count)]
            if item_type == _STRING:
                self.skip_strings(count, keep_markup=key == TOKENS_KEY)
            elif item_type in _SCALARS:
                n = struct.calcsize(_SCALARS[item_type]) * count
                self._need(n)
                self.pos += n
            else:
                for _ in range(count):
                    self.value(item_type)
            return ArraySummary(item_type, count)
        raise self.damaged(f"it has a metadata value of unknown type {vtype}")


def read_info(path: str | Path) -> GGUFInfo:
    """Parse the header of a GGUF file and check that its tensor data is all there.

    Raises a GGUFError whose message says what is wrong and what to do.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO named .gguf must not wait for a writer; only regular files
        # are read (a device such as /dev/zero never ends).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(info.st_mode):
                raise NotGGUFError(f"“{path.name}” is not a file but a pipe, device or socket, so Hearth "
                                   "will not read it as a model.")
            size = info.st_size
            if size < 4 or fh.read(4) != MAGIC:
                raise NotGGUFError(
                    f"“{path.name}” is not a GGUF model file. Hearth runs models in GGUF format; "
                    "look for a file ending in .gguf on the model's download page."
                )
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Reader(buf, size, path))
    except IsADirectoryError:
        raise NotGGUFError(f"“{path.name}” is a folder, not a GGUF model file.") from None
    except FileNotFoundError:
        raise GGUFError(f"There is no file at {path}.") from None
    except PermissionError:
        raise GGUFError(f"Hearth may not read {path}: check the file's permissions.") from None


def read_head(data: bytes, name: str) -> GGUFInfo:
    """The metadata in the first bytes of a GGUF file (a ranged GET of its start): as many keys as
    those bytes hold. Enough to learn the architecture and the attention shape before a download."""
    path = Path(name)
    if data[:4] != MAGIC:
        raise NotGGUFError(f"“{name}” is not a GGUF model file.")
    r = _Reader(data, len(data), path)
    metadata: dict[str, Any] = {}
    version = tensor_count = 0
    r.pos = 4
    try:
        version = r.scalar("<I")
        tensor_count = r.scalar("<Q")
        kv_count = r.scalar("<Q")
        for _ in range(min(kv_count, 1_000_000)):
            key = r.string()
            metadata[key] = r.value(r.scalar("<I"), key)
    except (TruncatedError, GGUFError):
        pass  # the rest of the header lies beyond the bytes fetched
    return GGUFInfo(path=path, version=version, file_size=0, expected_size=0, tensor_count=tensor_count,
                    parameters=0, metadata=metadata)


def _parse(r: _Reader) -> GGUFInfo:
    r.pos = 4
    version = r.scalar("<I")
    if version == 1:
        raise UnsupportedGGUFError(
            f"“{r.path.name}” uses the first GGUF version (2023), which llama.cpp no longer reads. "
            "Download a newer conversion of this model."
        )
    if version not in (2, 3):
        hint = " It may have been made for a big-endian machine." if version > 0xFFFF else ""
        raise UnsupportedGGUFError(
            f"“{r.path.name}” is GGUF version {version}, which this version of Hearth cannot read.{hint}"
        )
    tensor_count = r.scalar("<Q")
    kv_count = r.scalar("<Q")
    if tensor_count > 1_000_000 or kv_count > 1_000_000:
        raise r.damaged("its header counts make no sense")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = r.string()
        metadata[key] = r.value(r.scalar("<I"), key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = DEFAULT_ALIGNMENT
    parameters = 0
    data_end = 0
    next_offset = 0  # where the next tensor's data must start: llama.cpp's gguf.cpp checks the same
    type_counts: dict[str, int] = {}
    for _ in range(tensor_count):
        r.string()  # tensor name
        n_dims = r.scalar("<I")
        if n_dims > 8:
            raise r.damaged(f"a tensor claims {n_dims} dimensions")
        elements = 1
        for _ in range(n_dims):
            elements *= r.scalar("<Q")
        ttype = r.scalar("<I")
        offset = r.scalar("<Q")
        if elements > LARGEST_TENSOR or offset > LARGEST_TENSOR:
            raise r.damaged("a tensor claims to be larger than any model")
        parameters += elements
        if ttype in RETIRED_TYPES:
            raise UnsupportedGGUFError(
                f"“{r.path.name}” stores its weights as {RETIRED_TYPES[ttype]}, a format llama.cpp "
                "has since dropped. Download a newer quantization of this model."
            )
        if ttype not in TENSOR_TYPES:
            raise UnsupportedGGUFError(
                f"“{r.path.name}” stores a tensor in a format (type {ttype}) that this version of Hearth "
                "does not know: the file is damaged, or newer than Hearth's llama.cpp."
            )
        name, block, block_bytes = TENSOR_TYPES[ttype]
        type_counts[name] = type_counts.get(name, 0) + 1
        size = (elements + block - 1) // block * block_bytes
        if offset != next_offset:
            raise r.damaged("its list of tensors does not match the sizes of the tensors before them")
        next_offset = offset + (size + alignment - 1) // alignment * alignment
        data_end = max(data_end, offset + size)

    data_start = (r.pos + alignment - 1) // alignment * alignment
    expected = data_start + data_end if tensor_count else r.pos
    if r.size < expected:
        raise TruncatedError(
            f"“{r.path.name}” ends early: it is {human_bytes(r.size)} of {human_bytes(expected)}. "
            "It was probably not downloaded or copied completely; get it again."
        )
    return GGUFInfo(
        path=r.path,
        version=version,
        file_size=r.size,
        expected_size=expected,
        tensor_count=tensor_count,
        parameters=parameters,
        tensor_types=type_counts,
        metadata=metadata,
        markup_tokens=r.markup,
    )
