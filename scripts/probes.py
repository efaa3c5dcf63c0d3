"""The probe file (``data/results/data_tau_probe.csv``) and the more-data table built from it.

    .venv/bin/python scripts/probes.py add --recipe "1M steps, tau 1" RUN [RUN ...]
    .venv/bin/python scripts/probes.py table [--write]
    .venv/bin/python scripts/probes.py pairs RUN [RUN ...]
    .venv/bin/python scripts/probes.py evaluate --recipe "1M steps, tau 1" [--episodes 100] RUN [RUN ...]
    .venv/bin/python scripts/probes.py long [--episodes 100] [--write]
    .venv/bin/python scripts/probes.py commands [--out runs/more-data]

``add`` puts finished student runs (folders that ``workbench distill`` or a sweep wrote) into the probe file under
a recipe name; a run of the same recipe, teacher, size, loss and seed replaces the old row. ``table`` prints the
more-data table (each game at the recipe ``data/results/more_data_recipes.json`` names) and, with ``--write``,
saves it as ``data/results/more_data_table.csv``. Both files are written atomically. ``pairs`` shows, for runs
made with ``--ema``, the averaged student's % of teacher beside the same run's raw final weights. ``evaluate``
plays finished runs and their teachers over more episodes than the cards' 30 (into ``data/results/long_evals.csv``),
and ``long`` prints the more-data table from those evaluations (``--write``: ``more_data_table_<N>ep.csv``).
``commands`` prints the ``workbench sweep`` commands that make the table's runs, one per game and recipe.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from workbench.reproduce import long_evaluation_rows
from workbench.results import (LONG_EVALS, MORE_DATA, PROBES, add_probe_rows, long_eval_table, more_data_commands,
                               more_data_table, weight_average_pairs)
from workbench.runs import atomic_write_bytes

TABLE = MORE_DATA.parent / "more_data_table.csv"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add finished runs to the probe file")
    add.add_argument("--recipe", required=True, help='what the runs did differently, e.g. "1M steps, tau 1"')
    add.add_argument("runs", nargs="+")
    add.add_argument("--into", default=str(PROBES))
    table = sub.add_parser("table", help="print the more-data table")
    table.add_argument("--write", action="store_true", help=f"also save it as {TABLE}")
    pairs = sub.add_parser("pairs", help="averaged vs raw final weights of runs made with --ema")
    pairs.add_argument("runs", nargs="+")
    longer = sub.add_parser("evaluate", help="evaluate finished runs and their teachers over more episodes")
    longer.add_argument("--recipe", required=True, help="the recipe the runs stand for (as in the probe file)")
    longer.add_argument("--episodes", type=int, default=100)
    longer.add_argument("runs", nargs="+")
    longer.add_argument("--into", default=str(LONG_EVALS))
    longer.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: evaluations beside running trainings on a small CPU)")
    commands = sub.add_parser("commands", help="the sweeps that make the more-data table's runs")
    commands.add_argument("--out", default="runs/more-data")
    long_table = sub.add_parser("long", help="the more-data table from the longer evaluations")
    long_table.add_argument("--episodes", type=int, default=100)
    long_table.add_argument("--write", action="store_true", help="also save it beside more_data_table.csv")
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            rows = add_probe_rows(args.runs, args.recipe, args.into)
            print(rows[rows["recipe"] == args.recipe].to_string(index=False))
        elif args.command == "evaluate":
            import torch

            torch.set_num_threads(args.threads)
            rows = long_evaluation_rows(args.runs, args.recipe, args.episodes, args.into)
            mine = rows[(rows["recipe"] == args.recipe) & (rows["episodes"] == args.episodes)]
            print(mine.drop(columns=["recipe"]).round(2).to_string(index=False))
        elif args.command == "long":
            result = long_eval_table(episodes=args.episodes)
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(result.to_string(index=False))
            if args.write:
                atomic_write_bytes(TABLE.with_name(f"more_data_table_{args.episodes}ep.csv"),
                                   result.to_csv(index=False).encode())
        elif args.command == "commands":
            print("\n".join(more_data_commands(out=args.out)))
        elif args.command == "pairs":
            result = weight_average_pairs(args.runs)
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(result.drop(columns="run").round(3).to_string(index=False))
                print(result.groupby(["teacher", "student_net"])[["pct_averaged", "pct_unaveraged", "gain"]]
                      .agg(["mean", "count"]).round(1).to_string())
        else:
            result = more_data_table()
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(result.to_string(index=False))
            if args.write:
                atomic_write_bytes(TABLE, result.to_csv(index=False).encode())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
