"""One quick pass of each benchmark, so `make bench` cannot rot unnoticed. No timing is asserted."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_streaming_benchmark_runs_and_reports_each_figure(home):
    result = subprocess.run([sys.executable, "tests/bench/stream.py", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stderr[-2000:]
    for words in ("generation, tokens/s", "time to first token, ms", "GUI stall p99 / max, ms", "Machine:"):
        assert words in result.stdout


def test_the_download_benchmark_runs_and_reports_each_figure():
    result = subprocess.run([sys.executable, "tests/bench/download.py", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for words in ("throughput, MB/s", "Hearth CPU seconds per GB", "fetched again after a kill"):
        assert words in result.stdout


def test_the_startup_benchmark_runs_and_nothing_heavy_loads_before_the_window_shows():
    result = subprocess.run([sys.executable, "tests/bench/startup.py", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "start-up, s" in result.stdout
    # llama_cpp, huggingface_hub, openai, anthropic, numpy, fastapi and uvicorn cost seconds to import:
    # they must wait until something needs them, after the window is on screen.
    assert "heavy modules loaded before the window showed: none" in result.stdout


def test_the_big_data_benchmark_runs_and_reports_each_figure(home):
    result = subprocess.run([sys.executable, "tests/bench/big_data.py", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stderr[-2000:]
    for words in ("open the chat, to first paint, ms", "search, ms (median / p95 / max)",
                  "app memory with the chat open, MB", "20 messages drawn at first"):
        assert words in result.stdout
