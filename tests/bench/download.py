"""Download speed and cost: Hearth's downloader against curl on the same loopback URL, in one run.

A 1 GB file is served by the hub stand-in in its own process. Runs interleave Hearth and curl;
prints both throughputs (medians), the ratio, Hearth's CPU seconds per GB (hashing included),
and how many bytes are fetched again when a download is killed halfway and started again.

Usage: python tests/bench/download.py [--size-mb N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from desktop.core.downloads import RemoteFile, download, part_paths  # noqa: E402
from tests.bench.common import machine_line, median, row, save  # noqa: E402
from tests.hub_server import start_download  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def served(stats_url: str) -> int:
    with urllib.request.urlopen(stats_url) as response:
        return int(json.loads(response.read())["bytes_served"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="50 MB, one run, nothing saved (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.runs = 50, 1
    work = Path(tempfile.mkdtemp(prefix="hearth-download-bench-"))
    try:
        source = work / "big.gguf"
        block = os.urandom(16 << 20)
        with open(source, "wb") as fh:
            for _ in range(max(1, args.size_mb * 1_000_000 // len(block))):
                fh.write(block)
        hub = subprocess.Popen([sys.executable, "-m", "tests.hub_server", str(source)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
        info = json.loads(hub.stdout.readline())
        remote = RemoteFile(url=info["url"], size=info["size"], sha256=info["sha256"])
        gb = info["size"] / 1e9
        hearth_rates, curl_rates, checked_rates, cpu_per_gb = [], [], [], []
        for i in range(args.runs):
            # Each transfer starts with nothing waiting to be written back: the gigabyte the
            # previous one wrote would otherwise compete with it for the disk.
            os.sync()
            dest = work / f"hearth-{i}.gguf"
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            asyncio.run(download(remote, dest, local_only=True))
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            hearth_rates.append(info["size"] / wall / 1e6)
            cpu_per_gb.append(cpu / gb)
            dest.unlink()
            os.sync()
            t0 = time.perf_counter()
            subprocess.run(["curl", "-s", "-f", "-o", str(work / "curl.bin"), info["url"]], check=True)
            curl_rates.append(info["size"] / (time.perf_counter() - t0) / 1e6)
            # The same guarantee as Hearth's (the bytes match the hub's sha256) costs curl users a
            # second pass over the file.
            subprocess.run(["sha256sum", str(work / "curl.bin")], check=True, stdout=subprocess.DEVNULL)
            checked_rates.append(info["size"] / (time.perf_counter() - t0) / 1e6)
            (work / "curl.bin").unlink()
            print(f"run {i + 1}: curl {curl_rates[-1]:.1f} MB/s ({checked_rates[-1]:.1f} with sha256sum), "
                  f"Hearth {hearth_rates[-1]:.1f} MB/s ({cpu_per_gb[-1]:.2f} CPU s/GB)", file=sys.stderr)

        # Kill a download halfway, start it again, count what is fetched twice.
        dest = work / "killed.gguf"
        part, _ = part_paths(dest)
        child = start_download(remote, dest)
        while not part.exists() or part.stat().st_size < info["size"] // 2:
            time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        on_disk = part.stat().st_size
        before = served(info["stats"])
        asyncio.run(download(remote, dest, local_only=True))
        refetched = served(info["stats"]) - before - (info["size"] - on_disk)
        hub.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    h, c, cc = median(hearth_rates), median(curl_rates), median(checked_rates)
    result = {"size_bytes": info["size"], "runs": args.runs, "hearth_mb_per_s": round(h, 1),
              "curl_mb_per_s": round(c, 1), "ratio": round(h / c, 3),
              "curl_then_sha256sum_mb_per_s": round(cc, 1), "ratio_to_checked": round(h / cc, 3),
              "pair_ratio_median": round(median([a / b for a, b in zip(hearth_rates, curl_rates, strict=True)]), 3),
              "pair_ratios": [round(a / b, 3) for a, b in zip(hearth_rates, curl_rates, strict=True)],
              "hearth_cpu_s_per_gb": round(median(cpu_per_gb), 2),
              "killed_at_fraction": round(on_disk / info["size"], 3),
              "refetched_bytes": max(refetched, 0), "refetched_fraction": round(max(refetched, 0) / info["size"], 5)}
    print(machine_line())
    print(f"{info['size'] / 1e6:.0f} MB from the hub stand-in on 127.0.0.1, {args.runs} interleaved runs each")
    print(f"{'':34}{'curl':>10}{'Hearth':>10}{'ratio':>8}  target")
    print(f"{'throughput, MB/s (median)':34}{c:>10.1f}{h:>10.1f}{h / c:>8.3f}  >= 0.95")
    print(f"{'  run by run (median of ratios)':34}{'':>20}{result['pair_ratio_median']:>8.3f}"
          f"  (each: {', '.join(format(r, '.2f') for r in result['pair_ratios'])})")
    print(f"{'vs curl, then sha256sum':34}{cc:>10.1f}{h:>10.1f}{h / cc:>8.3f}")
    print(f"{'Hearth CPU seconds per GB':34}{'':>10}{result['hearth_cpu_s_per_gb']:>10.2f}")
    print(f"{'fetched again after a kill at ' + format(result['killed_at_fraction'], '.0%'):34}{'':>10}"
          f"{result['refetched_fraction']:>10.3%}{'':>8}  < 1 %")
    rows = [row("Download throughput, MB/s", h, c, reference_name="curl", target="ratio ≥ 0.95", met=h / c >= 0.95),
            row("Download, Hearth ÷ curl run by run (median of the pairs; each run: "
                + ", ".join(format(r, ".2f") for r in result["pair_ratios"]) + ")", result["pair_ratio_median"],
                digits=3),
            row("Download throughput, verified, MB/s", h, cc, reference_name="curl, then sha256sum"),
            row("Download CPU per GB (hashing included), s", result["hearth_cpu_s_per_gb"], digits=2),
            row(f"Fetched again after a kill at {result['killed_at_fraction']:.0%}, %",
                100 * result["refetched_fraction"], target="< 1", met=result["refetched_fraction"] < 0.01, digits=2)]
    save("download", result, rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
