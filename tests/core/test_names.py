"""Model names from outside (file names, other apps, the hub): letters of every script kept,
never a path, bounded in bytes, duplicates judged by content, and a model picked only by a
reference that names it."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from desktop.core.gguf import GGUFError
from desktop.core.library import (
    MAX_NAME_BYTES,
    AlreadyInstalled,
    LibraryError,
    file_problem,
    model_id_for,
    safe_component,
    shown,
)
from tests.gguf_forge import write_gguf


def forge(path, name="m", width=16):
    """A small valid GGUF; a different `width` gives different bytes (so a different sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, {"general.architecture": "llama", "general.name": name, "general.file_type": 0},
                      [("token_embd.weight", [64, width], 0)])


def test_models_named_in_other_scripts_get_distinct_ids_and_keep_their_names(services, tmp_path):
    russian = forge(tmp_path / "Модель A.gguf", width=16)
    japanese = forge(tmp_path / "日本語モデル.gguf", width=17)
    a = services.library.import_file(russian)
    b = services.library.import_file(japanese)  # not "already installed": a different model
    assert (a.id, a.name) == ("model-a", "Модель A")
    assert (b.id, b.name) == ("ribenyumoderu", "日本語モデル")
    assert os.path.basename(a.path) == "Модель A.gguf" and os.path.basename(b.path) == "日本語モデル.gguf"
    # a name typed in its own script picks the model too
    assert services.library.get("日本語モデル").id == "ribenyumoderu"
    assert services.library.get("Модель A").id == "model-a"


def test_duplicates_are_judged_by_content_not_by_name(services, tmp_path):
    first = services.library.import_file(forge(tmp_path / "a" / "Модель.gguf", width=16))
    with pytest.raises(AlreadyInstalled) as err:  # the same bytes under another name
        services.library.import_file(shutil.copy(first.path, tmp_path / "copy-of-it.gguf"))
    assert err.value.record.id == first.id
    other = services.library.import_file(forge(tmp_path / "b" / "Модель.gguf", width=18))  # same name, other bytes
    assert other.id == "model-2" and other.path != first.path
    assert [m.name for m in services.library.models()] == ["Модель", "Модель"]
    linked = services.library.import_file(forge(tmp_path / "c" / "Модель.gguf", width=19), link=True)
    assert linked.id == "model-3"


@pytest.mark.parametrize("length", [251, 252, 253, 254, 255])
def test_a_file_name_of_up_to_255_bytes_imports_under_a_shortened_name(services, tmp_path, length):
    stem = "я" * ((length - 5) // 2) + "x" * ((length - 5) % 2)  # two bytes a letter
    source = forge(tmp_path / f"{stem}.gguf")
    assert len(source.name.encode()) == length
    record = services.library.import_file(source)
    stored = os.path.basename(record.path)
    assert stored.endswith(".gguf") and len(stored.encode()) <= MAX_NAME_BYTES
    assert stem.startswith(stored[:-5])  # cut between letters, never inside one
    assert record.name == stem  # the name shown is the whole original
    assert len(record.id) <= 80
    folder = services.paths.models / "local"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [stored]  # no .part left


def test_a_failed_copy_leaves_no_folder_and_no_temporary_file(services, tmp_path, monkeypatch):
    source = forge(tmp_path / ("長い名前" * 20 + ".gguf"))

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(LibraryError, match="The disk filled up while copying"):
        services.library.import_file(source)
    monkeypatch.undo()
    assert services.library.models() == []
    local = services.paths.models / "local"
    assert not local.exists() or list(local.iterdir()) == []


def test_a_pipe_named_like_a_model_is_refused_at_once(services, tmp_path):
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    box = {}

    def attempt():
        try:
            services.library.import_file(fifo, link=True)
        except LibraryError as exc:
            box["error"] = str(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "importing a pipe hung"
    assert box["error"] == "“model.gguf” is not a model file: it is a folder, a device or a pipe."


def test_removal_needs_an_id_or_an_unambiguous_start_of_three_characters(services, tmp_path):
    only = services.library.import_file(forge(tmp_path / "qwen-small.gguf"), link=True)
    for blank in ("", "  "):
        with pytest.raises(LibraryError, match="No model was named"):
            services.library.remove(blank)
    with pytest.raises(LibraryError, match="too short to pick a model: give at least 3 characters"):
        services.library.remove("qw")
    assert [m.id for m in services.library.models()] == [only.id]
    services.library.import_file(forge(tmp_path / "qwen-large.gguf", width=20), link=True)
    with pytest.raises(LibraryError, match="could mean several models: .*qwen-large.*qwen-small"):
        services.library.remove("qwen")
    removed, _ = services.library.remove("qwen-s")
    assert removed.id == "qwen-small"
    assert [m.id for m in services.library.models()] == ["qwen-large"]


def test_names_from_outside_never_become_paths_and_stay_within_bounds():
    assert safe_component("../../etc/passwd") == "_etc_passwd"
    assert safe_component("..") == "_"
    assert safe_component("") == "_"
    assert safe_component("a\\b:c*d?e\"f<g>h|i") == "a_b_c_d_e_f_g_h_i"
    assert safe_component("evil\u202egguf.exe") == "evil_gguf.exe"  # right-to-left override
    assert safe_component("line\nbreak\x00\x1b[31m.gguf") == "line_break_[31m.gguf"
    assert safe_component("NUL.gguf") == "_NUL.gguf"
    assert safe_component("Модель 日本語.gguf") == "Модель 日本語.gguf"
    split = safe_component("ж" * 200 + "-00002-of-00003.gguf")
    assert split.endswith("ж-00002-of-00003.gguf") and len(split.encode()) <= MAX_NAME_BYTES
    assert model_id_for("Qwen2.5-7B-Instruct-Q4_K_M.gguf") == "qwen2-5-7b-instruct-q4_k_m"
    assert model_id_for("\u202e.gguf").startswith("model-") and model_id_for("\u202e.gguf") != model_id_for(
        "\u200b.gguf")
    assert shown("a\nb\tc\x1b[2J\u202e") == "a\\nb\\tc\\x1b[2J\\u202e"


def test_a_moved_file_is_marked_missing_and_found_again_only_if_it_is_the_same(services, tmp_path):
    original = forge(tmp_path / "here" / "travels.gguf")
    record = services.library.import_file(original, link=True)
    moved = tmp_path / "there" / "travels.gguf"
    moved.parent.mkdir()
    original.rename(moved)
    record = services.library.get(record.id)
    assert file_problem(record) == "File missing"
    impostor = forge(tmp_path / "impostor.gguf", width=30)
    with pytest.raises(LibraryError, match="is not the file of travels: its content differs"):
        services.library.locate(record.id, impostor)
    assert services.library.get(record.id).path == str(original)
    found = services.library.locate(record.id, moved)
    assert found.path == str(moved) and file_problem(found) == ""


def test_hub_file_names_are_made_harmless_and_bounded_like_any_other_name():
    from desktop.core import hub
    from desktop.core.downloads import part_paths

    assert hub.safe_filename("sub/évil\x1b[2J\u202ename.gguf") == "évil_[2J_name.gguf"
    long = hub.safe_filename("Ж" * 200 + "-00001-of-00002.gguf")
    assert long.endswith("Ж-00001-of-00002.gguf") and len(long.encode()) <= MAX_NAME_BYTES
    assert all(len(p.name.encode()) <= 255 for p in part_paths(__import__("pathlib").Path(long)))
    with pytest.raises(hub.HubError):
        hub.safe_filename("../x.gguf")


def test_a_name_two_models_share_removes_neither_and_a_removed_id_never_picks_its_twin(services, tmp_path):
    first = services.library.import_file(forge(tmp_path / "a" / "Модель A.gguf", width=16))
    second = services.library.import_file(forge(tmp_path / "b" / "Модель A.gguf", width=17))
    assert (first.id, second.id) == ("model-a", "model-a-2")
    for ref in ("Модель A", "МОДЕЛЬ a", "Модель Ａ", "Модель A.gguf"):  # any case, full-width letters
        with pytest.raises(LibraryError, match="could mean several models with that name: "
                                               "model-a \\(Модель A\\), model-a-2 \\(Модель A\\)"):
            services.library.remove(ref)
    assert len(services.library.models()) == 2
    assert services.library.remove("model-a")[0].id == "model-a"
    for ref in ("model-a", "MODEL-A", "model-a "):  # the removed id, typed again
        with pytest.raises(LibraryError, match="No model called .* Installed: model-a-2 \\(Модель A\\)"):
            services.library.get(ref)
    assert [m.id for m in services.library.models()] == ["model-a-2"]
    assert services.library.get("Модель A").id == "model-a-2"  # the one left with that name


def test_a_start_of_a_name_in_any_script_picks_one_model_or_says_it_could_mean_several(services, tmp_path):
    services.library.import_file(forge(tmp_path / "日本語モデル.gguf", width=16))
    services.library.import_file(forge(tmp_path / "日本語モデル v2.gguf", width=17))
    with pytest.raises(LibraryError, match="“日本語” could mean several models: ribenyumoderu \\(日本語モデル\\), "
                                           "ribenyumoderu-v2 \\(日本語モデル v2\\)"):
        services.library.get("日本語")
    assert services.library.get("日本語モデル").id == "ribenyumoderu"  # the whole name is exact
    assert services.library.get("日本語モデル v").id == "ribenyumoderu-v2"
    llama = services.library.import_file(forge(tmp_path / "Llama-3.gguf", width=18))
    assert services.library.get("llama").id == llama.id == "llama-3"  # its own "-3", not a twin's


def test_an_exact_id_wins_over_a_name_and_the_error_names_the_ids(services, tmp_path):
    same = services.library.import_file(forge(tmp_path / "a" / "same.gguf", width=16))
    twin = services.library.import_file(forge(tmp_path / "b" / "same.gguf", width=17))
    assert services.library.get("same").id == same.id == "same"
    assert services.library.get("same-2").id == twin.id
    with pytest.raises(LibraryError, match="No model called “nothing” is installed. Installed: same, same-2."):
        services.library.get("nothing")


@pytest.mark.parametrize("kind", ["loop", "too long", "no permission", "not a folder", "folder", "empty"])
def test_a_path_that_cannot_be_opened_is_refused_in_one_sentence(services, tmp_path, kind):
    if kind == "loop":
        path = tmp_path / "loop.gguf"
        path.symlink_to(path)
        words = "“loop.gguf” is a link that loops back on itself"
    elif kind == "too long":
        path = tmp_path / ("я" * 200 + ".gguf")
        words = "has a name or path too long"
    elif kind == "no permission":
        if os.geteuid() == 0:
            pytest.skip("root reads every file")
        locked = tmp_path / "locked"
        path = forge(locked / "m.gguf")
        locked.chmod(0)
        words = "Hearth may not open it or a folder on its path"
    elif kind == "not a folder":
        path = forge(tmp_path / "m.gguf") / "inside.gguf"
        words = "part of its path is a file, not a folder"
    elif kind == "folder":
        path = tmp_path / "folder.gguf"
        path.mkdir()
        words = "“folder.gguf” is not a model file: it is a folder."
    else:
        path, words = "", "No file was named: give the path of a .gguf file."
    for link in (False, True):
        with pytest.raises(LibraryError) as err:
            services.library.import_file(path, link=link)
        assert words in str(err.value) and "\n" not in str(err.value) and "Errno" not in str(err.value)
    if kind == "no permission":
        (tmp_path / "locked").chmod(0o700)
    assert services.library.models() == []


def test_a_file_named_only_dots_keeps_its_gguf_ending_and_is_shown_as_model(services, tmp_path):
    record = services.library.import_file(forge(tmp_path / "...gguf"))
    assert os.path.basename(record.path) == "model.gguf" and record.name == "model"
    assert services.library.get(record.id).path == record.path


def test_a_model_named_by_its_file_name_or_a_looping_path_for_chat_is_found_or_refused_in_a_sentence(
        services, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = services.library.import_file(forge(tmp_path / "in" / "Модель A.gguf"))
    assert services.library.resolve("Модель A.gguf").id == record.id  # no such path here: the installed model
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(loop)
    with pytest.raises(LibraryError, match="“loop.gguf” is a link that loops back on itself"):
        services.library.resolve(str(loop))
    with pytest.raises(GGUFError, match="There is no file"):
        services.library.resolve(str(tmp_path / "nowhere.gguf"))
