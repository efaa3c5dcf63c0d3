"""Two sweeps of the same students side by side: each run with its own collection, and all from one shared
collection. Prints both % of teacher tables (mean (std) over seeds), whether each shared cell's mean lies within the
independent seeds' range, and the ratio of wall and CPU times when the sweeps' `/usr/bin/time -v` logs are given.

    .venv/bin/python scripts/shared_vs_independent.py INDEPENDENT_DIR SHARED_DIR [INDEPENDENT_LOG SHARED_LOG]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd


def cells(results: pd.DataFrame) -> pd.DataFrame:
    g = results.groupby(["student_net", "loss"]).pct_of_teacher
    return pd.DataFrame({"mean": g.mean(), "std": g.std(), "min": g.min(), "max": g.max(), "n": g.size()})


def times(log: Path) -> dict:
    text = log.read_text()
    h, m, s = ([0] + [float(x) for x in re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
                                                     text).group(1).split(":")])[-3:]
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    return {"wall_s": 3600 * h + 60 * m + s, "cpu_s": user + system}


def main(argv: list[str]) -> int:
    alone, shared = (pd.read_csv(Path(d) / "results.csv") for d in argv[:2])
    a, b = cells(alone), cells(shared)
    table = pd.DataFrame({
        "independent": [f"{m:.1f} ({s:.1f})" for m, s in zip(a["mean"], a["std"])],
        "shared": [f"{m:.1f} ({s:.1f})" for m, s in zip(b["mean"], b["std"])],
        "shared within independent range": [lo - 1e-9 <= m <= hi + 1e-9 for m, lo, hi in zip(b["mean"], a["min"], a["max"])],
    }, index=a.index)
    print(f"% of teacher, mean (std) over {int(a['n'].min())} seeds per cell; {len(alone)} and {len(shared)} runs")
    print(table.to_string())
    inside = table["shared within independent range"]
    print(f"\nshared means within the independent seeds' range: {int(inside.sum())} of {len(inside)} cells")
    if len(argv) >= 4:
        ta, tb = times(Path(argv[2])), times(Path(argv[3]))
        print(f"wall: independent {ta['wall_s']:.0f} s, shared {tb['wall_s']:.0f} s, ratio {tb['wall_s'] / ta['wall_s']:.3f}")
        print(f"CPU:  independent {ta['cpu_s']:.0f} s, shared {tb['cpu_s']:.0f} s, ratio {tb['cpu_s'] / ta['cpu_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
