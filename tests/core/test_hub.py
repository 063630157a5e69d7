"""Reading a hub repository's GGUF files through huggingface_hub, against the hub stand-in."""

import asyncio

import pytest

from desktop.core import hub
from desktop.core.hub import HubError, HubFile, RepoFiles
from tests.hub_server import Hub

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def server(model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # never the developer's own hub token
    s = Hub().start()
    s.add(REPO, model_file.name, model_file, license="apache-2.0", downloads=500, likes=7)
    s.add("someone/Other-7B-GGUF", "other-7b.Q4_K_M.gguf", model_file, downloads=900)
    yield s
    s.stop()


def test_search_lists_gguf_repositories_most_downloaded_first(server):
    found = asyncio.run(hub.search("gguf", endpoint_url=server.url))
    assert [r.id for r in found] == ["someone/Other-7B-GGUF", REPO]
    assert found[1].downloads == 500 and found[1].likes == 7
    assert asyncio.run(hub.search("smollm2", endpoint_url=server.url))[0].id == REPO


def test_a_repository_lists_its_quantizations_with_sizes_and_hashes(server, model_file):
    files = asyncio.run(hub.repo_files(REPO, endpoint_url=server.url))
    assert files.license == "apache-2.0" and files.revision == server.revision
    assert [v.quantization for v in files.variants] == ["Q4_1"]  # README.md is not a model
    only = files.variants[0].files[0]
    assert only.size == model_file.stat().st_size and len(only.sha256) == 64


def test_an_unknown_repository_gets_a_sentence(server):
    with pytest.raises(HubError, match="has no repository “nobody/nothing” \\(404\\)"):
        asyncio.run(hub.repo_files("nobody/nothing", endpoint_url=server.url))


def test_split_files_are_one_model_and_quantizations_are_grouped():
    files = [HubFile("Q8_0/big-Q8_0-00002-of-00002.gguf", 4, ""), HubFile("Q8_0/big-Q8_0-00001-of-00002.gguf", 5, ""),
             HubFile("big-Q4_K_M.gguf", 5, ""), HubFile("big-IQ2_XS.gguf", 2, ""), HubFile("notes.txt", 1, "")]
    variants = hub.group_variants(files)
    assert [(v.quantization, v.size) for v in variants] == [("IQ2_XS", 2), ("Q4_K_M", 5), ("Q8_0", 9)]
    assert [f.name for f in variants[2].files] == ["Q8_0/big-Q8_0-00001-of-00002.gguf",
                                                   "Q8_0/big-Q8_0-00002-of-00002.gguf"]
    repo = RepoFiles("a/b", "rev", "", False, variants)
    assert hub.choose(repo).quantization == "Q4_K_M"  # the preferred default
    assert hub.choose(repo, "q8_0").quantization == "Q8_0"
    assert hub.choose(repo, "big-IQ2_XS.gguf").quantization == "IQ2_XS"
    with pytest.raises(HubError, match="It offers: IQ2_XS, Q4_K_M, Q8_0"):
        hub.choose(repo, "Q2_K")


@pytest.mark.parametrize("name", ["../evil.gguf", "/etc/passwd", "a/../../b.gguf", "a//b.gguf"])
def test_hub_file_names_never_become_paths_outside_the_model_folder(name):
    with pytest.raises(HubError, match="not a safe file name"):
        hub.safe_filename(name)
    assert hub.safe_filename("Q8_0/model-00001-of-00002.gguf") == "model-00001-of-00002.gguf"
