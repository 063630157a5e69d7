"""The curated catalog: complete entries, and memory estimates that agree with a real file."""

from desktop.core import catalog, gguf, hub


def test_the_catalog_offers_a_dozen_models_across_families_and_sizes():
    entries = catalog.load()
    assert len(entries) >= 12
    assert {"Llama", "Qwen", "Mistral", "Gemma", "Phi", "SmolLM"} <= {e.family for e in entries}
    assert min(e.parameters_b for e in entries) < 1 < 7 < max(e.parameters_b for e in entries)
    for e in entries:
        assert e.repo.count("/") == 1 and e.license and e.good_for and e.context_length > 0, e.name
        for quant, name in e.files.items():
            assert hub.quantization_of(name) == quant, (e.name, name)
            hub.safe_filename(name)
        assert len({e.repo for e in entries}) == len(entries)


def test_the_catalogs_context_memory_matches_the_real_model_file(model_file):
    [smol] = [e for e in catalog.load() if e.repo.endswith("SmolLM2-135M-Instruct-GGUF")]
    info = gguf.read_info(model_file)
    assert smol.files[info.quantization] == model_file.name
    assert smol.kv_cache_bytes(4096) == info.kv_cache_bytes(4096)
    assert abs(smol.approx_size("Q4_1") - model_file.stat().st_size) / model_file.stat().st_size < 0.25


def test_a_broken_catalog_gets_a_sentence(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text("{not json")
    try:
        catalog.load(bad)
    except catalog.CatalogError as exc:
        assert "could not be read" in str(exc) and "search the hub" in str(exc)
    else:
        raise AssertionError("a broken catalog was accepted")


def test_embedding_models_are_in_the_catalog_and_marked_as_not_for_chat():
    entries = catalog.load()
    embedding = [e for e in entries if e.is_embedding]
    assert {e.repo for e in embedding} >= {"nomic-ai/nomic-embed-text-v1.5-GGUF",
                                           "CompendiumLabs/bge-small-en-v1.5-gguf"}
    assert all("not a chat model" in e.good_for for e in embedding)
    assert {e.kind for e in entries} == {"chat", "embedding"}
