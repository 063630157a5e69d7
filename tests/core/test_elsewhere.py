"""Finding GGUF models that other apps keep (LM Studio, GPT4All, Jan, the Hugging Face cache,
Ollama), in a made-up home folder laid out as those apps lay it out."""

import json

from desktop.core import elsewhere
from tests.gguf_forge import write_gguf


def tiny(path, name):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, {"general.architecture": "llama", "general.name": name, "general.file_type": 0},
                      [("token_embd.weight", [64, 16 + len(name)], 0)])


def test_models_of_other_apps_are_found_and_offered_once(tmp_path, monkeypatch, services):
    home = tmp_path / "home"
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    tiny(home / ".lmstudio/models/lmstudio-community/Qwen-GGUF/qwen-Q4_K_M.gguf", "Qwen")
    tiny(home / ".local/share/nomic.ai/GPT4All/Phi-3-mini-4k-instruct.Q4_0.gguf", "Phi")
    tiny(home / ".lmstudio/models/x/vision/mmproj-model-f16.gguf", "projector")  # not a model
    (home / ".lmstudio/models/x/broken.gguf").write_bytes(b"not a model at all")
    # the Hugging Face cache: snapshots hold links to blobs named by hash
    blob = tiny(home / ".cache/huggingface/hub/models--org--Mistral-GGUF/blobs/4f1d", "Mistral")
    snap = home / ".cache/huggingface/hub/models--org--Mistral-GGUF/snapshots/abc123"
    snap.mkdir(parents=True)
    (snap / "mistral-Q4_K_M.gguf").symlink_to(blob)
    # Ollama: a manifest names the blob that holds the model
    ollama = home / ".ollama/models"
    tiny(ollama / "blobs/sha256-9a8b", "Llama")
    manifest = ollama / "manifests/registry.ollama.ai/library/llama3.2/latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:9a8b"},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:ffff"}]}))

    scan = elsewhere.scan(set(), home=home)
    found = scan.found
    assert sorted((f.app, f.name) for f in found) == [
        ("GPT4All", "Phi-3-mini-4k-instruct.Q4_0.gguf"),
        ("Hugging Face cache", "mistral-Q4_K_M.gguf"),
        ("LM Studio", "qwen-Q4_K_M.gguf"),
        ("Ollama", "llama3.2:latest"),
    ]

    # linking uses the file where it is, under a name a person recognises
    ollama_model = next(f for f in found if f.app == "Ollama")
    record = services.library.import_file(ollama_model.path, link=True, label=ollama_model.name)
    assert record.origin == "linked" and record.id == "llama3-2-latest"
    hf = next(f for f in found if f.app == "Hugging Face cache")
    assert services.library.import_file(hf.path, link=True).id == "mistral-q4_k_m"
    known = {__import__("pathlib").Path(m.path): m.id for m in services.library.models()}
    again = elsewhere.scan(known, home=home)
    assert {f.app for f in again.new} == {"GPT4All", "LM Studio"}
    assert {f.app: f.in_hearth for f in again.found if f.in_hearth} == {
        "Ollama": "llama3-2-latest", "Hugging Face cache": "mistral-q4_k_m"}
    # what was left out, and why
    assert {(s.path.name, s.reason) for s in scan.skipped} == {
        ("mmproj-model-f16.gguf", "a vision projector that goes with a model, not a model"),
        ("broken.gguf", "not a usable model: “broken.gguf” is not a GGUF model file. Hearth runs models in "
                        "GGUF format; look for a file ending in .gguf on the model's download page."),
    }


def _scan_within(seconds, *args, **kwargs):
    """scan() in a daemon thread: a scan that hangs fails the test instead of hanging it."""
    import threading

    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("scan", elsewhere.scan(*args, **kwargs)), daemon=True)
    started = __import__("time").monotonic()
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the scan was still running after {seconds} s"
    return box["scan"], __import__("time").monotonic() - started


def test_pipes_devices_sockets_and_link_loops_are_skipped_with_a_reason_never_read(tmp_path, monkeypatch):
    import os
    import socket

    home = tmp_path / "home"
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    models = home / ".lmstudio/models/someone"
    good = tiny(models / "good-Q4_0.gguf", "Good")
    os.mkfifo(models / "fifo.gguf")
    (models / "zero.gguf").symlink_to("/dev/zero")
    (models / "loop-a.gguf").symlink_to(models / "loop-b.gguf")
    (models / "loop-b.gguf").symlink_to(models / "loop-a.gguf")
    (models / "gone.gguf").symlink_to(models / "nowhere.gguf")
    monkeypatch.chdir(models)  # a socket's path must be short: bind it by its relative name
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("socket.gguf")
    (models / "dir-link").symlink_to(models)  # a folder that contains itself: not followed
    deep = models
    for i in range(10):
        deep = deep / f"d{i}"
    tiny(deep / "deep.gguf", "Deep")
    locked = models / "locked"
    tiny(locked / "inside.gguf", "Inside")
    locked.chmod(0)
    # Ollama: manifests that are a pipe, a link to /dev/zero, huge, and not JSON
    ollama = home / ".ollama/models"
    manifests = ollama / "manifests/registry.ollama.ai/library/bad"
    manifests.mkdir(parents=True)
    os.mkfifo(manifests / "fifo")
    (manifests / "zero").symlink_to("/dev/zero")
    (manifests / "huge").write_bytes(b" " * (elsewhere.MAX_MANIFEST_BYTES + 10))
    (manifests / "text").write_text("hello")
    (manifests / "pipe-blob").write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:abcd"}]}))
    (ollama / "blobs").mkdir()
    os.mkfifo(ollama / "blobs/sha256-abcd")
    try:
        scan, took = _scan_within(20, set(), home=home)
    finally:
        locked.chmod(0o755)
        sock.close()
    readable_anyway = [locked / "inside.gguf"] if os.geteuid() == 0 else []  # root reads any folder
    assert [f.path for f in scan.found] == [good, *readable_anyway]
    reasons = {p.name: r for p, r in ((s.path, s.reason) for s in scan.skipped)}
    assert reasons["fifo.gguf"] == "not a regular file: it is a pipe (FIFO)"
    assert reasons["zero.gguf"] == "not a regular file: it is a device"
    assert reasons["socket.gguf"] == "not a regular file: it is a socket"
    assert reasons["loop-a.gguf"] == reasons["loop-b.gguf"] == "a link that loops back on itself"
    assert reasons["gone.gguf"] == "a link to a file that is not there"
    assert reasons["d5"] == "more than 6 folders deep"
    if not readable_anyway:
        assert reasons["locked"] == "Hearth may not open this folder (permissions)"
    assert reasons["fifo"] == "not a regular file: it is a pipe (FIFO)"
    assert reasons["zero"] == "not a regular file: it is a device"
    assert reasons["huge"] == "not an Ollama manifest: larger than 1024 KiB"
    assert reasons["text"] == "not an Ollama manifest: not valid JSON"
    assert reasons["sha256-abcd"] == "the model file of bad:pipe-blob: not a regular file: it is a pipe (FIFO)"
    assert took < 10


def _clean_env(monkeypatch):
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)


def ollama_model(home, name, blob, digest=None):
    """An Ollama manifest `name` (`model/tag`) whose model layer is `blob` (sha256 hex digits)."""
    manifest = home / ".ollama/models/manifests/registry.ollama.ai/library" / name
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest or blob}"}]}))
    return home / ".ollama/models/blobs" / f"sha256-{blob}"


def test_one_huge_app_folder_does_not_keep_the_others_from_being_looked_at(tmp_path, monkeypatch):
    home = tmp_path / "home"
    _clean_env(monkeypatch)
    jan = home / "jan/models"
    for i in range(60):  # stands for 60,000 files: the budget is made small to match
        tiny(jan / f"m-{i:02d}.gguf", f"jan{i}")
    tiny(home / ".lmstudio/models/org/repo/qwen-Q4_0.gguf", "Qwen")
    tiny(home / ".cache/huggingface/hub/models--org--Phi-GGUF/snapshots/abc/phi-Q4_0.gguf", "Phi")
    tiny(ollama_model(home, "llama3.2/latest", "9a8b"), "Llama")
    monkeypatch.setattr(elsewhere, "MAX_ENTRIES", 20)
    scan, _ = _scan_within(60, set(), home=home)
    assert {f.app for f in scan.found} == {"Jan", "LM Studio", "Hugging Face cache", "Ollama"}
    assert len([f for f in scan.found if f.app == "Jan"]) == 20
    assert [(s.path, s.reason) for s in scan.skipped] == [
        (jan, "Jan's folder has more than 20 entries; the rest of it (from m-20.gguf) was not looked at")]


def test_a_missing_blob_a_file_two_apps_list_and_a_hard_linked_copy_are_told_apart(tmp_path, monkeypatch):
    import os

    home = tmp_path / "home"
    _clean_env(monkeypatch)
    ollama_model(home, "gone/latest", "dead")  # its blob was deleted: a plain missing file
    lm = tiny(home / ".lmstudio/models/org/repo/shared-Q4_0.gguf", "Shared")
    blob = ollama_model(home, "shared/latest", "5eed")
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.symlink_to(lm)  # Ollama's blob is a link to LM Studio's file
    gpt = tiny(home / ".local/share/nomic.ai/GPT4All/own-Q4_0.gguf", "Own")
    installed = tmp_path / "hearth/own.gguf"
    installed.parent.mkdir()
    os.link(gpt, installed)  # the copy in Hearth is a hard link of GPT4All's file
    scan = elsewhere.scan({installed: "own-q4_0"}, home=home)
    assert [(f.app, f.name, f.in_hearth) for f in scan.found] == [
        ("GPT4All", "own-Q4_0.gguf", "own-q4_0"), ("LM Studio", "shared-Q4_0.gguf", "")]
    reasons = {s.path.name: s.reason for s in scan.skipped}
    assert reasons == {
        "sha256-dead": "the model file of gone:latest: missing: no file is there",
        "sha256-5eed": f"the same file as {lm} (LM Studio), listed once",
    }
