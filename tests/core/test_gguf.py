"""Reading GGUF files: the real starter model, and the broken files people end up with."""

import shutil
import struct

import pytest

from desktop.core import gguf
from tests.gguf_forge import write_gguf


def test_reads_the_starter_models_metadata_without_loading_it(model_file):
    info = gguf.read_info(model_file)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.context_length == 8192
    assert info.license == "apache-2.0"
    assert info.has_chat_template
    assert 130_000_000 < info.parameters < 140_000_000
    assert info.layers == 30
    assert info.expected_size == info.file_size == model_file.stat().st_size


def test_kv_cache_estimate_follows_the_attention_shape(model_file):
    info = gguf.read_info(model_file)
    # 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes per token
    assert info.kv_cache_bytes(1) == 30 * 3 * 128 * 2
    assert info.kv_cache_bytes(4096) == 4096 * info.kv_cache_bytes(1)


def test_a_file_cut_short_says_how_much_of_it_is_there(model_file, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(model_file, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(40_000_000))
    with pytest.raises(gguf.TruncatedError) as err:
        gguf.read_info(cut)
    message = str(err.value)
    assert "ends early" in message
    assert "40.0 MB of 98.4 MB" in message


def test_a_file_cut_inside_its_header_is_reported_as_cut(model_file, tmp_path):
    cut = tmp_path / "header-only.gguf"
    with open(model_file, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(3000))
    with pytest.raises(gguf.TruncatedError, match="ends early"):
        gguf.read_info(cut)


def test_a_text_file_renamed_gguf_is_not_a_model(tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are my notes, not a model\n")
    with pytest.raises(gguf.NotGGUFError, match="not a GGUF model file"):
        gguf.read_info(fake)


@pytest.mark.parametrize("content", [b"", b"GG"])
def test_empty_and_tiny_files_are_not_models(tmp_path, content):
    fake = tmp_path / "tiny.gguf"
    fake.write_bytes(content)
    with pytest.raises(gguf.NotGGUFError):
        gguf.read_info(fake)


def test_the_first_gguf_version_is_refused_with_a_reason(tmp_path):
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    with pytest.raises(gguf.UnsupportedGGUFError, match="first GGUF version"):
        gguf.read_info(old)


def test_a_retired_tensor_format_is_refused_before_loading(tmp_path):
    path = write_gguf(tmp_path / "q4_2.gguf", {"general.architecture": "llama"},
                      [("w", [32], 4)], write_data=False, size=4096)
    with pytest.raises(gguf.UnsupportedGGUFError, match="Q4_2"):
        gguf.read_info(path)


def test_a_missing_file_and_a_folder_get_sentences(tmp_path):
    with pytest.raises(gguf.GGUFError, match="There is no file"):
        gguf.read_info(tmp_path / "nope.gguf")
    with pytest.raises(gguf.NotGGUFError, match="folder"):
        gguf.read_info(tmp_path)


def test_crafted_files_are_measured_exactly(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf", {"general.architecture": "hearthnet", "general.name": "Tiny"},
                      [("a", [8, 4], 0), ("b", [16], 0)])
    info = gguf.read_info(path)
    assert info.architecture == "hearthnet"
    assert info.parameters == 48
    assert info.expected_size == path.stat().st_size


def test_a_copy_of_the_model_reads_the_same(model_file, tmp_path):
    copy = shutil.copy(model_file, tmp_path / "copy.gguf")
    assert gguf.read_info(copy).metadata == gguf.read_info(model_file).metadata


def test_a_tensor_out_of_place_or_of_an_unknown_type_is_caught_before_llama_cpp_sees_it(tmp_path):
    good = write_gguf(tmp_path / "good.gguf", {"general.architecture": "llama"},
                      [("a", [8], 0), ("b", [8], 0)])
    assert gguf.read_info(good).tensor_count == 2
    data = good.read_bytes()
    second_offset = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00b") + 9 + 4 + 8 + 4  # name, n_dims, dim, type
    moved = bytearray(data)
    moved[second_offset] ^= 0x40  # the second tensor's data offset, one bit flipped
    (tmp_path / "moved.gguf").write_bytes(bytes(moved))
    with pytest.raises(gguf.GGUFError, match="is damaged: its list of tensors does not match"):
        gguf.read_info(tmp_path / "moved.gguf")
    retyped = bytearray(data)
    retyped[second_offset - 4] = 72  # the second tensor's type
    (tmp_path / "retyped.gguf").write_bytes(bytes(retyped))
    with pytest.raises(gguf.UnsupportedGGUFError, match=r"\(type 72\) that this version of Hearth does not know"):
        gguf.read_info(tmp_path / "retyped.gguf")


def test_llama_cpps_word_on_misplaced_tensors_becomes_the_damaged_sentence():
    from desktop.core.engine import explain_exit

    log = "gguf_init_from_file_impl: tensor 'blk.0.attn_q.weight' has offset 30081024, expected 43450368\n"
    assert explain_exit(log, 1, "Model").startswith("“Model” is damaged")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_pipe_a_device_or_a_folder_named_gguf_is_refused_at_once(tmp_path, kind):
    """A model whose file was swapped for a FIFO (which would wait for a writer forever) or a link
    to /dev/zero (which never ends) is refused with a sentence before anything is read."""
    import os
    import threading

    path = tmp_path / "model.gguf"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_error_of(path)), daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, "reading it hung"
    assert isinstance(outcome[0], gguf.NotGGUFError)
    assert ("folder" if kind == "folder" else "pipe, device or socket") in str(outcome[0])


def _error_of(path):
    try:
        gguf.read_info(path)
    except gguf.GGUFError as exc:
        return exc
    return None
