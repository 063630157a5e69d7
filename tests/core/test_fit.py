"""'Will it run here?': labels from free memory, with the numbers behind them."""

from desktop.core import fit, gguf, hardware
from desktop.core.fit import FITS_GPU, FITS_RAM, TIGHT, TOO_LARGE, Machine

GB = 1_000_000_000


def test_each_label_follows_from_the_memory_needed_and_free():
    laptop = Machine(ram_total=16 * GB, ram_free=10 * GB)
    assert fit.assess(4 * GB, GB, laptop).label == FITS_RAM  # 5.2 GB of 10 free
    assert fit.assess(8 * GB, GB, laptop).label == TIGHT  # 9.6 GB: only if little else runs
    assert fit.assess(20 * GB, GB, laptop).label == TOO_LARGE
    gpu = Machine(ram_total=32 * GB, ram_free=20 * GB, vram_free=12 * GB)
    assert fit.assess(7 * GB, GB, gpu).label == FITS_GPU
    assert fit.assess(12 * GB, GB, gpu).label == FITS_RAM  # too big for the card, fine in RAM
    text = fit.assess(4 * GB, GB, laptop).explain()
    assert "weights 4.0 GB" in text and "context 1.0 GB" in text and "10.0 GB of 16.0 GB RAM free" in text


def test_the_recommendation_is_the_largest_everyday_quantization_that_runs():
    laptop = Machine(ram_total=16 * GB, ram_free=10 * GB)
    sizes = {"Q2_K": 3.0, "Q4_K_M": 4.9, "Q6_K": 6.6, "Q8_0": 8.5, "F16": 16.0}
    fits = {q: (int(s * GB), fit.assess(int(s * GB), GB, laptop)) for q, s in sizes.items()}
    assert fit.recommend(fits) == "Q6_K"
    small = Machine(ram_total=8 * GB, ram_free=7 * GB)
    fits = {q: (int(s * GB), fit.assess(int(s * GB), GB, small)) for q, s in sizes.items()}
    assert fit.recommend(fits) == "Q2_K"
    tiny_model = {"Q8_0": (GB // 5, fit.assess(GB // 5, 0, small)), "F16": (GB // 2, fit.assess(GB // 2, 0, small))}
    assert fit.recommend(tiny_model) == "Q8_0"
    assert fit.recommend({"F16": (16 * GB, fit.assess(16 * GB, GB, small))}) is None


def test_the_estimate_for_a_real_model_is_what_the_engine_checks_before_loading(model_file):
    info = gguf.read_info(model_file)
    here = Machine.here()
    result = fit.assess(info.file_size, info.kv_cache_bytes(4096), here)
    assert result.memory == hardware.estimate_memory(info.file_size, info.kv_cache_bytes(4096))
    assert result.label in (FITS_RAM, FITS_GPU)


def test_nvidia_smi_lines_become_gpus():
    gpus = hardware.parse_nvidia_smi("NVIDIA GeForce RTX 4060, Laptop GPU, 8188, 7710\nbad line\n")
    assert gpus == [hardware.Gpu("NVIDIA GeForce RTX 4060, Laptop GPU", 8188 * 1024 * 1024, 7710 * 1024 * 1024)]
