"""The model library: importing, linking and removing model files."""

import pytest

from desktop.core.gguf import GGUFError
from desktop.core.library import AlreadyInstalled, LibraryError, model_id_for, safe_component


def test_importing_copies_the_model_and_records_what_it_is(services, model_file):
    record = services.library.import_file(model_file)
    assert record.id == "smollm2-135m-instruct-q4_1"
    assert record.name == "SmolLM2-135M-Instruct"
    assert record.quantization == "Q4_1"
    assert record.architecture == "llama"
    assert record.context_length == 8192
    assert record.license == "apache-2.0"
    assert record.origin == "imported"
    assert len(record.sha256) == 64
    copied = services.paths.models / "local" / model_file.stem / model_file.name
    assert record.path == str(copied)
    assert copied.stat().st_size == model_file.stat().st_size
    assert not list(copied.parent.glob("*.part"))


def test_the_same_file_twice_is_refused_by_its_hash(services, model_file):
    first = services.library.import_file(model_file, link=True)
    with pytest.raises(AlreadyInstalled) as err:
        services.library.import_file(model_file, link=True)
    assert err.value.record.id == first.id
    assert len(services.library.models()) == 1


def test_removing_a_model_frees_its_disk_and_says_how_much(services, model_file):
    record = services.library.import_file(model_file)
    removed, freed = services.library.remove(record.id)
    assert freed == model_file.stat().st_size
    assert services.library.models() == []
    assert not (services.paths.models / "local" / model_file.stem).exists()


def test_removing_a_linked_model_leaves_the_users_file_alone(services, model_file):
    record = services.library.import_file(model_file, link=True)
    _, freed = services.library.remove(record.id)
    assert freed == 0
    assert model_file.exists()


def test_a_broken_file_is_refused_and_leaves_nothing_behind(services, model_file, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(model_file.read_bytes()[:10_000_000])
    with pytest.raises(GGUFError, match="ends early"):
        services.library.import_file(cut)
    assert services.library.models() == []
    assert not any(services.paths.models.rglob("*.gguf*"))


def test_unknown_ids_get_a_sentence_listing_what_is_installed(services, model_file):
    with pytest.raises(LibraryError, match="no model is installed at all"):
        services.library.get("llama")
    services.library.import_file(model_file, link=True)
    with pytest.raises(LibraryError, match="Installed: smollm2-135m-instruct-q4_1"):
        services.library.get("llama")
    assert services.library.get("smollm2").id == "smollm2-135m-instruct-q4_1"


def test_names_from_outside_never_become_paths():
    assert safe_component("../../etc/passwd") == "_etc_passwd"
    assert safe_component("..") == "_"
    assert "/" not in safe_component("/abs/path.gguf")
    assert model_id_for("Qwen2.5-7B-Instruct-Q4_K_M.gguf") == "qwen2-5-7b-instruct-q4_k_m"
