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

    found = elsewhere.scan(set(), home=home)
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
    known = {__import__("pathlib").Path(m.path) for m in services.library.models()}
    assert {f.app for f in elsewhere.scan(known, home=home)} == {"GPT4All", "LM Studio"}
