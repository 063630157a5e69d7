"""One quick pass of the whole benchmark suite (`make bench`), so it cannot rot unnoticed: every
benchmark runs, and every figure of the table comes out. No timing is asserted: figures belong in
`make bench`, on a quiet machine, not in a pass/fail test."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_suite_runs_every_benchmark_and_writes_the_table(tmp_path, home):
    readme = (ROOT / "README.md").read_text()
    result = subprocess.run([sys.executable, "tests/bench/run.py", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"machine", "stream", "engine", "serve", "startup", "big_data", "smooth", "render", "download",
            "faults"} <= set(results)
    assert results["machine"]["llama_cpp_python"] and results["machine"]["pyside6"]
    table = (tmp_path / "results.md").read_text()
    for figure in ("Generation, tokens/s", "Time to first token, 9", "GUI stall while generating, p99 ms",
                   "Model load, file not cached, s", "Model load, file cached, s", "Engine memory (RSS)",
                   "Start-up to the window drawn, s", "and the hidden pages built after it", "Open a 400-message chat", "Search 2,000 messages",
                   "App memory with that chat open", "GUI stall during a", "GUI stall scrolling 300 messages",
                   "Download throughput, MB/s", "Fetched again after a kill",
                   "Faults survived, all kinds (of injected)", "Through the local server (openai SDK), tokens/s",
                   "8 clients at once: answered"):
        line = next((line for line in table.splitlines() if figure in line), None)
        assert line is not None, f"{figure!r} missing from the table"
        hearth_cell = line.split("|")[3].strip()
        assert hearth_cell and hearth_cell != "nan", line  # a figure, measured
    # llama_cpp, huggingface_hub, anthropic, numpy, fastapi, uvicorn and httpx cost from 0.1 s to
    # seconds to import: they must wait until something needs them, after the window is on screen.
    assert "| Heavy modules imported before the window shows | none |" in table
    assert (ROOT / "README.md").read_text() == readme  # a quick pass leaves the real figures alone
