"""Draw the README's pictures from the committed tables: docs/rusu_kl.png and docs/more_data_100ep.png.

    .venv/bin/python scripts/figures.py [--out docs]

They are the figures notebook 10 shows (``workbench.plots.rusu_heatmap``, ``more_data_figure``), drawn by a real
browser (Debian's chromium through playwright, as the browser tests use it), so the README's pictures are the
notebook's and not a second drawing. Run it again after ``scripts/probes.py long --write`` or a new Rusu table.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def figures() -> dict:
    """name -> plotly figure, from the committed CSVs."""
    from workbench import plots
    from workbench.results import long_eval_table, rusu_table

    results = pd.read_csv(ROOT / "data/results/rusu_results.csv", dtype={"beta": str})
    kl = rusu_table(results[results["loss"] == "kl"], preset="demo")
    longer = long_eval_table(episodes=100)
    return {
        "rusu_kl": plots.rusu_heatmap(kl, title="Rusu's recipe at the demo scale (KL, tau 0.01): % of teacher"),
        # the recipes are the README table's second column; under the bars they would overlap
        "more_data_100ep": plots.more_data_figure(
            longer.assign(recipe=None), title="Each game at its recipe, 100 episodes of student and teacher: % of teacher"),
    }


def to_png(fig, path: Path, width: int, height: int) -> None:
    """Render ``fig`` in headless chromium and save a screenshot of it (plotly.js inlined: works offline)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "figure.html"
        fig.update_layout(width=width, height=height)
        fig.write_html(page_file, include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": width + 20, "height": height + 20})
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            page.locator(".js-plotly-plot").screenshot(path=str(path))
            browser.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"needs Debian's chromium at {CHROMIUM}: sudo apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {"rusu_kl": (760, 520), "more_data_100ep": (1100, 560)}
    for name, fig in figures().items():
        path = args.out / f"{name}.png"
        to_png(fig, path, *sizes[name])
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
