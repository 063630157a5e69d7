"""What Hearth can say about its llama.cpp without loading it."""

from desktop.core import runtime


def test_the_llama_cpp_inside_knows_the_common_families_and_not_made_up_ones():
    for name in ("llama", "qwen2", "qwen3", "gemma3", "phi3"):
        assert runtime.knows_architecture(name) is True, name
    assert runtime.knows_architecture("hearthnet") is False


def test_version_and_backend_are_known():
    assert runtime.llama_cpp_version() == "0.3.36"
    assert runtime.backend() in ("CPU", "CUDA", "Vulkan", "Metal", "ROCm", "SYCL")


def test_asking_does_not_import_llama_cpp(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from desktop.core import runtime; runtime.backend(); "
            "runtime.knows_architecture('llama'); print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
