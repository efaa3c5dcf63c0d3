"""The committed results in ``data/results`` and the tables built from them.

Three row stores, each merged the same way (a run made again replaces its row, see ``replace_rows``) and written
atomically: the Rusu sweep's runs (``rusu_results.csv``, tabled by ``rusu_table``), single runs past the demo recipe
under a recipe label (``data_tau_probe.csv``), and longer evaluations of such runs (``long_evals.csv``). The
more-data recipes (``more_data_recipes.json``) are data: each recipe is defined once by the settings that make it,
and each game names the recipe its row takes (``more_data_table``, ``long_eval_table``, ``more_data_commands``).

Nothing here trains or plays a policy, so plots, notebooks and scripts can read the tables without loading the
trainers; what runs things is in ``workbench.reproduce``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .evaluate import geometric_mean_pct
from .hardware import machine
from .runs import atomic_write_bytes
from .teachers import TEACHERS_DIR

DATA = Path(__file__).resolve().parent.parent / "data" / "results"
RESULTS = DATA / "rusu_results.csv"
PROBES = DATA / "data_tau_probe.csv"  # single runs past the demo recipe (more data, tau 1, collection)
MORE_DATA = DATA / "more_data_recipes.json"  # the recipes, and which one each game's row of the more-data table takes
PROBE_COLUMNS = ["recipe", "teacher", "student_net", "loss", "tau", "beta", "ema", "seed", "env_steps", "updates",
                 "student_params", "compression", "return_mean", "return_std", "teacher_return_mean", "pct_of_teacher",
                 "agreement", "kl", "wall_seconds"]
PROBE_KEY = ["recipe", "teacher", "student_net", "loss", "seed"]
# What one recipe's runs share: a recipe label stands for one way of distilling.
RECIPE_COLUMNS = ["tau", "beta", "ema", "env_steps"]
KEY = ["teacher", "student_net", "loss", "tau", "beta", "seed"]
# Longer evaluations of probe or table runs than their cards' 30 episodes (a card's % of teacher moves by ~9 points
# on Seaquest and Asterix from the 30-episode noise of student and teacher alone).
LONG_EVALS = DATA / "long_evals.csv"
LONG_EVAL_COLUMNS = ["recipe", "teacher", "student_net", "loss", "seed", "episodes", "eval_seed", "return_mean",
                     "return_std", "teacher_return_mean", "teacher_return_std", "pct_of_teacher", "stalled_episodes",
                     "card_pct_of_teacher", "teacher_card_return_mean"]
LONG_EVAL_KEY = ["recipe", "teacher", "student_net", "loss", "seed", "episodes"]
RUSU_GEOMEAN = {"net1": 108.3, "net2": 101.7, "net3": 83.9}
TARGETS = {"net3": 100.0, "tiny": 95.0}
# A more-data recipe's fields, each with its type and how to say it; layers (absent: the size preset's own shape) and
# runs_in (absent: the probe file) are optional. The label is the name the recipe's runs carry in the CSVs' recipe
# column; the other fields are the settings that make them.
RECIPE_FIELDS = {"label": (str, "a string"), "env_steps": (int, "a whole number"), "tau": ((int, float), "a number"),
                 "beta": (str, 'a string such as "1" or "linear:1:0"'), "layers": (str, 'a string such as "8:16"'),
                 "runs_in": (str, "a file name")}
REQUIRED_RECIPE_FIELDS = ["label", "env_steps", "tau", "beta"]


def _machine_line() -> str:
    m = machine()
    return f"{m['processor']} {m['platform'].split('-')[0]}, {m['cpus']} CPUs, torch {m['torch']}"


def replace_rows(old: pd.DataFrame, new: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """``old`` without the rows that ``new`` holds again (same ``key``), then ``new``: how every committed results
    file here takes a run made again."""
    keep = ~old.set_index(key).index.isin(new.set_index(key).index)
    return pd.concat([old[keep], new], ignore_index=True) if keep.any() else new.reset_index(drop=True)


def commit_results(new: pd.DataFrame, into: str | Path = RESULTS, threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge a sweep's runs into the committed results (a run of the same teacher, size, loss, tau, beta and seed
    replaces the old one), stamp each new row with this machine, and rewrite the results and ``rusu_table.csv``
    beside them atomically. Returns (results, table)."""
    into = Path(into)
    # the committed table is the size presets' own shapes; a sweep's layers column is its runs' record of them
    new = new.drop(columns=["run", "layers"], errors="ignore").assign(
        machine=f"{_machine_line()}, {threads} thread{'s' if threads != 1 else ''} per run")
    old = pd.read_csv(into, dtype={"beta": str}) if into.exists() else new.iloc[:0]
    if "ema" in new and "ema" not in old:  # rows from before the sweeps wrote the weight average ran without it
        old = old.assign(ema=0.0)
    new = new.astype({"beta": str})
    results = replace_rows(old, new, KEY).sort_values(KEY, kind="stable").reset_index(drop=True)
    atomic_write_bytes(into, results.to_csv(index=False).encode())
    table = rusu_table(results)
    atomic_write_bytes(into.parent / "rusu_table.csv", table.to_csv(index=False).encode())
    return results, table


def rusu_table(results: pd.DataFrame, preset: str = "demo", wall_seconds: float | None = None) -> pd.DataFrame:
    """Long table: one row per game (and "geometric mean") x student size x loss, with % of teacher mean/std
    over seeds, the size as a share of the teacher, Rusu's figure where he has one, the machine and the sweep's
    run time (the sum of the runs' wall seconds, and the sweep's own wall time where given). A geometric mean row
    says over how many games it is taken: a sweep still going may have more games for one loss than another."""
    df = results.copy()
    df["game"] = df["env_id"]  # the whole id: MinAtar/Breakout-v1 and ALE/Breakout-v5 are two games
    g = (df.groupby(["game", "student_net", "loss"])
           .agg(pct_mean=("pct_of_teacher", "mean"), pct_std=("pct_of_teacher", "std"), seeds=("seed", "nunique"),
                compression=("compression", "mean"), agreement=("agreement", "mean"),
                teacher_return=("teacher_return_mean", "mean"))
           .reset_index())
    geo = (g.groupby(["student_net", "loss"])
             .agg(pct_mean=("pct_mean", geometric_mean_pct), compression=("compression", "mean"), seeds=("seeds", "min"),
                  games=("game", "nunique"))
             .reset_index().assign(game="geometric mean"))
    table = pd.concat([g, geo], ignore_index=True)
    table["rusu_dist_kl"] = [RUSU_GEOMEAN.get(n) if game == "geometric mean" and loss == "kl" else None
                             for game, n, loss in zip(table["game"], table["student_net"], table["loss"])]
    table["preset"] = preset
    table["machine"] = _machine_line()
    table["runs_wall_seconds"] = round(float(results["wall_seconds"].sum()), 1)
    table["sweep_wall_seconds"] = None if wall_seconds is None else round(wall_seconds, 1)
    order = {n: i for i, n in enumerate(["teacher", "net1", "net2", "net3", "tiny"])}
    table["_o"] = [(game == "geometric mean", game, order.get(n, 9), loss)
                   for game, n, loss in zip(table["game"], table["student_net"], table["loss"])]
    return table.sort_values("_o").drop(columns="_o").reset_index(drop=True).round(
        {"pct_mean": 1, "pct_std": 1, "compression": 4, "agreement": 4, "teacher_return": 2})


def wide(table: pd.DataFrame, loss: str = "kl") -> pd.DataFrame:
    """% of teacher, games x student sizes, for one loss; Rusu's Dist-KL geometric means as the last row."""
    t = table[table["loss"] == loss]
    w = t.pivot(index="game", columns="student_net", values="pct_mean")
    w = w[[c for c in ("net1", "net2", "net3", "tiny") if c in w.columns]]
    games = [g for g in w.index if g != "geometric mean"] + (["geometric mean"] if "geometric mean" in w.index else [])
    w = w.loc[games]
    if loss == "kl":
        w.loc["Rusu et al. 2016 (Atari, Dist-KL)"] = [RUSU_GEOMEAN.get(c, np.nan) for c in w.columns]
    return w


def probe_row(run_dir: str | Path, recipe: str) -> dict:
    """A finished student run as a row of the probe file (``PROBES``): its card's figures under a recipe label.
    Refuses a folder that is not a finished distillation run, and a run distilled from a teacher that is no longer
    the shipped one of that name (its % of teacher would be of another teacher)."""
    run_dir = Path(run_dir)
    if not (run_dir / "card.json").exists():
        raise ValueError(f"{run_dir} has no card.json, so it is not a finished run; finish it (the same command "
                         "with --resume) or give another folder")
    card = json.loads((run_dir / "card.json").read_text())
    if card.get("algo") != "distill":
        raise ValueError(f"{run_dir} is not a distilled student (algo {card.get('algo')!r}, env "
                         f"{card.get('env_id')!r}); give a folder that `workbench distill` wrote")
    shipped = TEACHERS_DIR / str(card["teacher"]) / "card.json"
    if shipped.exists():
        score = json.loads(shipped.read_text())["return_mean"]
        if not math.isclose(score, card["teacher_return_mean"], rel_tol=1e-9):
            raise ValueError(f"{run_dir} was distilled from a {card['teacher']} teacher that scores "
                             f"{card['teacher_return_mean']:.1f}, and the shipped one scores {score:.1f}; distil "
                             "it again from the shipped teacher")
    return {"recipe": recipe, **{k: card.get(k) for k in PROBE_COLUMNS[1:]}, "ema": card.get("ema") or 0.0}


def add_probe_rows(runs, recipe: str, into: str | Path = PROBES) -> pd.DataFrame:
    """Add finished runs to the probe file under ``recipe``; a row of the same recipe, teacher, size, loss and
    seed is replaced. Every run is checked before anything is written, and the file is rewritten atomically."""
    into = Path(into)
    new = pd.DataFrame([probe_row(r, recipe) for r in runs], columns=PROBE_COLUMNS).astype({"beta": str})
    old = pd.read_csv(into, dtype={"beta": str}) if into.exists() else new.iloc[:0]
    if "ema" not in old:  # rows written before the weight average: none of them used it
        old.insert(PROBE_COLUMNS.index("ema"), "ema", 0.0)
    table = replace_rows(old, new, PROBE_KEY)
    for recipe, rows in table[table["recipe"].isin(new["recipe"])].groupby("recipe"):
        mixed = [f for f in RECIPE_COLUMNS if rows[f].nunique() > 1]
        if mixed:
            seen = "; ".join(f"{f} {sorted(rows[f].unique().tolist())}" for f in mixed)
            raise ValueError(f"the recipe {recipe!r} would hold runs that differ in {seen}; a recipe stands for one "
                             "way of distilling, so give these runs a recipe name of their own")
    atomic_write_bytes(into, table.to_csv(index=False).encode())
    return table


def read_long_evals(path: str | Path = LONG_EVALS) -> pd.DataFrame:
    """The long-evaluation file, or no rows. Rows written before ``teacher_card_return_mean`` get it empty: they do
    not say which teacher of their name they were measured against, so no later call reuses their teacher mean."""
    path = Path(path)
    rows = pd.read_csv(path) if path.exists() else pd.DataFrame()
    return rows.reindex(columns=LONG_EVAL_COLUMNS)


def weight_average_pairs(runs) -> pd.DataFrame:
    """What the weight average changed, run by run: % of teacher and held-out agreement of the averaged student
    (the card's) beside the same run's final raw weights (its ``unaveraged`` entry), on the same seeds. A run
    without the average is refused: it has nothing to pair."""
    rows = []
    for run in runs:
        card = json.loads((Path(run) / "card.json").read_text()) if (Path(run) / "card.json").exists() else None
        if card is None or "unaveraged" not in card:
            raise ValueError(f"{run} is not a finished run with the weight average (no card.json, or a card without "
                             "'unaveraged'); give runs that `workbench distill --ema DECAY` finished")
        raw = card["unaveraged"]
        rows.append({"run": str(run), "teacher": card["teacher"], "student_net": card["student_net"],
                     "seed": card["seed"], "env_steps": card["env_steps"], "ema": card["ema"],
                     "pct_averaged": card["pct_of_teacher"], "pct_unaveraged": raw["pct_of_teacher"],
                     "gain": card["pct_of_teacher"] - raw["pct_of_teacher"],
                     "agreement_averaged": card["agreement"], "agreement_unaveraged": raw["agreement"]})
    return pd.DataFrame(rows)


def more_data_spec(path: str | Path = MORE_DATA) -> dict:
    """The more-data spec: the loss, the student sizes, the recipes by name, the recipe(s) each game takes, and
    the games to leave out of a second geometric mean."""
    return json.loads(Path(path).read_text())


def recipe_for(spec: dict, game: str, net: str) -> dict:
    """The fields of the recipe ``spec`` names for one game and student size (one name for all sizes, or
    {net: name}), checked: the label, env steps, tau and beta are needed, and only fields a sweep can make."""
    named = spec["games"][game]
    name = named.get(net) if isinstance(named, dict) else named
    if name is None:
        raise ValueError(f"the more-data spec names {game}'s recipes for {sorted(named)}, not for {net}")
    recipe = spec["recipes"].get(name)
    if recipe is None:
        raise ValueError(f"{game} takes the recipe {name!r}, which the spec's recipes do not define; define it there "
                         f"with its {', '.join(REQUIRED_RECIPE_FIELDS)} (and layers where the shape is its own)")
    problems = [f"{f} is not a field a sweep can make (run such a recipe with workbench distill and its --set "
                "flags)" for f in recipe if f not in RECIPE_FIELDS]
    problems += [f"it does not say its {f}" for f in REQUIRED_RECIPE_FIELDS if f not in recipe]
    problems += [f"{f} {v!r} is not {RECIPE_FIELDS[f][1]}" for f, v in recipe.items()
                 if f in RECIPE_FIELDS and not isinstance(v, RECIPE_FIELDS[f][0])]
    if problems:
        raise ValueError(f"recipe {name!r}: {'; '.join(problems)}")
    return recipe


def recipe_label(recipes: dict[str, dict]) -> str:
    """{net: recipe} as one label: one recipe for every size as its label, sizes at different recipes as
    'LABEL (net3); LABEL (tiny)'."""
    labels = [r["label"] for r in recipes.values()]
    return labels[0] if len(set(labels)) == 1 else "; ".join(f"{label} ({net})" for label, net in zip(labels, recipes))


def more_data_commands(spec: dict | None = None, seeds=(0, 1, 2), out: str = "runs/more-data") -> list[str]:
    """The sweeps that make the more-data table's runs: one per game and recipe, student sizes that differ only in
    shape in the same sweep (``--layers net3=12:24 tiny=8:16``)."""
    spec = spec or more_data_spec()
    commands = []
    for game in spec["games"]:
        recipes = {net: recipe_for(spec, game, net) for net in spec["nets"]}
        groups: dict[tuple, list[str]] = {}
        for net, r in recipes.items():
            groups.setdefault((r["env_steps"], r["tau"], r["beta"]), []).append(net)
        for (steps, tau, beta), nets in groups.items():
            layers = [f"{net}={recipes[net]['layers']}" for net in nets if "layers" in recipes[net]]
            commands.append(
                f"workbench --threads 1 sweep --teacher {game} --nets {' '.join(nets)} --losses {spec['loss']} "
                f"--seeds {' '.join(map(str, seeds))} --total-steps {steps} --tau {tau:g}"
                + ("" if beta == "1" else f" --betas {beta}") + (f" --layers {' '.join(layers)}" if layers else "")
                + f" --out {out}/{game}")
    return commands


def recipe_table(spec: dict, runs_of: Callable[[str, str, dict], pd.DataFrame],
                 before: Callable[[dict], dict] = lambda runs: {}, after: Callable[[dict], dict] = lambda runs: {},
                 cards: bool = False, nothing: str = "no runs at the spec's recipes") -> pd.DataFrame:
    """% of teacher per game of ``spec``, each student size at its recipe, then the geometric means and the targets.

    ``runs_of(game, net, recipe)`` gives a size's runs (one row per seed, with ``pct_of_teacher``); a game is in the
    table only where every size has runs, and the geometric means say how many of the spec's games they cover.
    A game's row: game, recipe label, ``before(runs)``, per size the mean, std and seeds of its % of teacher (and
    ``card_<net>``, the mean of ``card_pct_of_teacher``, where ``cards``), then ``after(runs)``; ``runs`` is
    {net: runs}. Integer columns (seeds, env steps, episodes) stay integers; the rest is rounded to 0.1. ``nothing``:
    the error when no game has runs."""
    nets = spec["nets"]
    rows = []
    for game in spec["games"]:
        recipes = {net: recipe_for(spec, game, net) for net in nets}
        runs = {net: runs_of(game, net, recipe) for net, recipe in recipes.items()}
        if any(r.empty for r in runs.values()):
            continue
        row = {"game": game, "recipe": recipe_label(recipes), **before(runs)}
        for net, r in runs.items():
            pct = r["pct_of_teacher"]
            row |= {net: pct.mean(), f"{net}_std": pct.std(), f"{net}_seeds": len(pct)}
            if cards:
                row[f"card_{net}"] = r["card_pct_of_teacher"].mean()
        rows.append(row | after(runs))
    if not rows:
        raise ValueError(nothing)
    games = pd.DataFrame(rows)
    n, of = len(games), len(spec["games"])
    parts = [(f"geometric mean, {n} of {of} games" if n < of else "geometric mean", games)]
    left_out = [g for g in spec.get("without", []) if g in set(games["game"])]
    if left_out:
        parts.append((f"geometric mean without {', '.join(left_out)}", games[~games["game"].isin(left_out)]))
    means = nets + ([f"card_{net}" for net in nets] if cards else [])
    extra = [{"game": name, **{c: geometric_mean_pct(part[c]) for c in means},
              **{f"{net}_seeds": part[f"{net}_seeds"].min() for net in nets}} for name, part in parts]
    extra.append({"game": "target", **{net: TARGETS.get(net) for net in nets}})
    table = pd.concat([games, pd.DataFrame(extra)], ignore_index=True)
    counts = [c for c in games.columns if pd.api.types.is_integer_dtype(games[c])]
    # the summary rows leave counts such as env steps empty: a nullable integer keeps the games' counts integers
    table[counts] = table[counts].astype("Int64")
    return table.round({c: 1 for c in table.columns if c not in counts and c not in ("game", "recipe")})


def more_data_table(spec: dict | None = None, results: pd.DataFrame | None = None,
                    probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """% of teacher per game with each game at the recipe ``spec`` names for it (default ``MORE_DATA``), one for
    every size or one per size (a size measured better at another recipe, say another shape). A recipe's runs are
    in ``rusu_results.csv`` (the demo sweep's runs, picked by the recipe's env steps, tau and beta: that file has no
    recipe column) or in the probe file under the recipe's label (``runs_in``; absent: the probe file), where they
    must have been made with the recipe's settings.
    One row per game (mean, std and seeds per size, and the env steps), then the geometric means (all games, and
    without the spec's ``without``) and the targets."""
    spec = spec or more_data_spec()
    loss = spec["loss"]
    files = {RESULTS.name: pd.read_csv(RESULTS, dtype={"beta": str}) if results is None else results,
             PROBES.name: pd.read_csv(PROBES, dtype={"beta": str}) if probes is None else probes}

    def runs_of(game: str, net: str, recipe: dict) -> pd.DataFrame:
        where = recipe.get("runs_in", PROBES.name)
        if where not in files:
            raise ValueError(f"recipe {recipe['label']!r}: runs_in {where!r} is not {' or '.join(files)}")
        rows = files[where]
        rows = rows[(rows["teacher"] == game) & (rows["student_net"] == net) & (rows["loss"] == loss)]
        made = ((rows["env_steps"] == recipe["env_steps"]) & (rows["tau"] == recipe["tau"])
                & (rows["beta"].astype(str) == recipe["beta"]))
        if where == RESULTS.name:
            rows = rows[made]  # the file may also hold a sweep's runs at another tau or beta
        else:
            mine = rows["recipe"] == recipe["label"]
            if (mine & ~made).any():
                raise ValueError(f"{game} {net} runs under {recipe['label']!r} in {where} were not made with the "
                                 f"recipe's env_steps {recipe['env_steps']}, tau {recipe['tau']:g} and beta "
                                 f"{recipe['beta']}; mend the recipe in {MORE_DATA.name} or the runs' label")
            rows = rows[mine]
        if rows.empty:
            raise ValueError(f"no {loss} {net} runs of {game} under the recipe {recipe['label']!r} in {where}; add "
                             "them with `scripts/probes.py add --recipe LABEL RUN...` or name another recipe")
        return rows

    return recipe_table(spec, runs_of,
                        after=lambda runs: {"env_steps": max(int(r["env_steps"].max()) for r in runs.values())})


def long_eval_table(spec: dict | None = None, long_evals: pd.DataFrame | None = None,
                    episodes: int = 100) -> pd.DataFrame:
    """The more-data table again from longer evaluations (``reproduce.long_evaluation_rows``): each game of ``spec``
    at its recipe, % of teacher over ``episodes`` episodes of student and teacher (mean, std and seeds per size),
    beside the same runs' 30-episode cards (``card_<net>``). A game is in it only where every size has such rows;
    the geometric means say how many of ``spec``'s games they cover. Same shape as ``more_data_table``, so
    ``plots.more_data_figure`` draws it."""
    spec = spec or more_data_spec()
    loss = spec["loss"]
    long_evals = read_long_evals() if long_evals is None else long_evals
    long_evals = long_evals[(long_evals["loss"] == loss) & (long_evals["episodes"] == episodes)]

    def runs_of(game: str, net: str, recipe: dict) -> pd.DataFrame:
        return long_evals[(long_evals["teacher"] == game) & (long_evals["student_net"] == net)
                          & (long_evals["recipe"] == recipe["label"])]

    return recipe_table(
        spec, runs_of, cards=True,
        before=lambda runs: {"episodes": episodes,
                             "teacher_return": pd.concat(runs.values())["teacher_return_mean"].mean()},
        nothing=f"no {episodes}-episode evaluations of {loss} runs at the spec's recipes; add them with "
                "`scripts/probes.py evaluate --recipe LABEL --episodes N RUN...`")
