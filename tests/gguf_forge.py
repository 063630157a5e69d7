"""Writes GGUF files for tests: small ones with chosen metadata and tensors, and split models."""

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


_U16, _I32, _U32 = 2, 5, 4


def _kv(key: str, vtype: int, value: int) -> bytes:
    fmt = {_U16: "<H", _I32: "<i", _U32: "<I"}[vtype]
    return _string(key) + struct.pack("<I", vtype) + struct.pack(fmt, value)


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def split_gguf(source: Path, parts: int, dest_dir: Path) -> list[Path]:
    """Split a GGUF file the way llama.cpp's gguf-split does: each part is a valid GGUF file named
    `<stem>-0000i-of-0000n.gguf` with a share of the tensors; the first keeps all the metadata, and
    every part carries `split.no`, `split.count` and `split.tensors.count`, which llama.cpp reads to
    load the parts as one model."""
    from desktop.core import gguf

    data = source.read_bytes()
    r = gguf._Reader(data, len(data), source)
    r.pos = 4
    version, tensor_count, kv_count = r.scalar("<I"), r.scalar("<Q"), r.scalar("<Q")
    kv_start, alignment = r.pos, gguf.DEFAULT_ALIGNMENT
    for _ in range(kv_count):
        key = r.string()
        value = r.value(r.scalar("<I"))
        if key == "general.alignment":
            alignment = value
    metadata = data[kv_start:r.pos]
    tensors = []  # (info without its offset, offset, byte size)
    for _ in range(tensor_count):
        start = r.pos
        r.string()
        dims = [r.scalar("<Q") for _ in range(r.scalar("<I"))]
        _, block, block_bytes = gguf.TENSOR_TYPES[r.scalar("<I")]
        info = data[start:r.pos]
        elements = 1
        for d in dims:
            elements *= d
        tensors.append((info, r.scalar("<Q"), (elements + block - 1) // block * block_bytes))
    data_start = _pad(r.pos, alignment)

    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = source.name.removesuffix(".gguf")
    share = -(-tensor_count // parts)
    paths = []
    for i in range(parts):
        group = tensors[i * share:(i + 1) * share]
        kvs = (_kv("split.no", _U16, i) + _kv("split.count", _U16, parts)
               + _kv("split.tensors.count", _I32, tensor_count))
        n_kv = 3
        if i == 0:
            kvs, n_kv = metadata + kvs, kv_count + 3
        elif alignment != gguf.DEFAULT_ALIGNMENT:
            kvs, n_kv = kvs + _kv("general.alignment", _U32, alignment), 4
        infos, blobs, offset = b"", [], 0
        for info, old_offset, size in group:
            infos += info + struct.pack("<Q", offset)
            blob = data[data_start + old_offset:data_start + old_offset + size]
            blobs.append(blob + b"\0" * (_pad(size, alignment) - size))
            offset += _pad(size, alignment)
        header = gguf.MAGIC + struct.pack("<IQQ", version, len(group), n_kv) + kvs + infos
        path = dest_dir / f"{stem}-{i + 1:05d}-of-{parts:05d}.gguf"
        with open(path, "wb") as out:
            out.write(header + b"\0" * (_pad(len(header), alignment) - len(header)))
            for blob in blobs:
                out.write(blob)
        paths.append(path)
    return paths


def with_chat_template(source: Path, dest: Path, template: str | None) -> Path:
    """A copy of a real model with another chat template, or none (template None), made as a
    user would with the `gguf` package's own tool (gguf-new-metadata, from llama.cpp)."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(source), str(dest), "--force"]
    if template is None:
        args += ["--remove-metadata", "tokenizer.chat_template"]
    else:
        jinja = dest.with_suffix(".jinja")
        jinja.write_text(template, encoding="utf-8")
        args += ["--chat-template-file", str(jinja)]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    return dest


def forge_bert(path, *, n_embd: int = 32, n_ctx: int = 64, seed: int = 0):
    """A tiny BERT embedding model (one layer, random weights, a WordPiece vocabulary of a dozen
    words and the letters) written with the `gguf` package: what llama.cpp needs to load one,
    with mean pooling and non-causal attention declared in the file as convert_hf_to_gguf does."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    words = ["hello", "world", "cat", "dog", "mat", "tax", "the", "a", "sat", "on", "rug", "kitten"]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + ["\u2581" + w for w in words] + list("abcdefghijklmnopqrstuvwxyz")
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name("forged-bert-embedding")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(2 * n_embd)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 4 + [gguf.TokenType.NORMAL] * (len(tokens) - 4))
    writer.add_token_type_count(2)
    for add, token in ((writer.add_bos_token_id, 2), (writer.add_eos_token_id, 3), (writer.add_unk_token_id, 1),
                       (writer.add_sep_token_id, 3), (writer.add_pad_token_id, 0)):
        add(token)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)

    def tensor(name: str, *shape: int, ones: bool = False) -> None:
        value = np.ones(shape, np.float32) if ones else (rng.standard_normal(shape) * 0.2).astype(np.float32)
        writer.add_tensor(name, value)

    tensor("token_embd.weight", len(tokens), n_embd)
    tensor("token_types.weight", 2, n_embd)
    tensor("position_embd.weight", n_ctx, n_embd)
    tensor("token_embd_norm.weight", n_embd, ones=True)
    tensor("token_embd_norm.bias", n_embd)
    for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
        tensor(f"blk.0.{part}.weight", n_embd, n_embd)
        tensor(f"blk.0.{part}.bias", n_embd)
    for norm in ("attn_output_norm", "layer_output_norm"):
        tensor(f"blk.0.{norm}.weight", n_embd, ones=True)
        tensor(f"blk.0.{norm}.bias", n_embd)
    tensor("blk.0.ffn_up.weight", 2 * n_embd, n_embd)
    tensor("blk.0.ffn_up.bias", 2 * n_embd)
    tensor("blk.0.ffn_down.weight", n_embd, 2 * n_embd)
    tensor("blk.0.ffn_down.bias", n_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
