"""Peak memory of `leadsync validate` as the file grows (reading is lazy: it must stay flat).

    python benchmarks/memory.py [ROWS ...]      # default: 50000 500000

Prints, per file size, leadsync's wall time and peak RSS next to a baseline measured in
the same run on the same file: `pandas.read_csv(path, dtype=str)` loading it whole.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.gen import write_csv  # noqa: E402

PEAK = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=False); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
READ_CSV = "import pandas, sys; pandas.read_csv(sys.argv[1], dtype=str, keep_default_na=False)"


def measure(*cmd: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, check=True
    )
    seconds, kib = out.stdout.split()
    return float(seconds), int(kib) / 1024


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [50_000, 500_000]
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    print(
        f"{'rows':>9} {'MB':>6} | {'leadsync s':>10} {'peak MB':>8} | {'read_csv s':>10} {'peak MB':>8}"
    )
    for n in sizes:
        path = data / f"mem-{n}.csv"
        if not path.exists():
            write_csv(path, n)
        ls = measure(
            sys.executable,
            "-m",
            "leadsync",
            "validate",
            str(path),
            "--report-dir",
            str(data / f"out-{n}"),
        )
        pd_ = measure(sys.executable, "-c", READ_CSV, str(path))
        size = path.stat().st_size / 1e6
        print(
            f"{n:>9} {size:>6.0f} | {ls[0]:>10.1f} {ls[1]:>8.0f} | {pd_[0]:>10.1f} {pd_[1]:>8.0f}"
        )


if __name__ == "__main__":
    main()
