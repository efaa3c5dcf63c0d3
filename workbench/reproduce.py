"""Rusu et al. (2016)'s compression table, reproduced on the shipped teachers.

The sweep config (``data/results/rusu_sweep.json``) names the teachers ("shipped": every teacher in
``data/teachers``), Rusu's student sizes and the 1.7% student, the three losses and the seeds. ``reproduce`` runs
it as one sweep (finished runs are skipped, so it resumes) and ``rusu_table`` turns the runs into the table:
% of teacher per game, student size and loss (mean and std over seeds), and the geometric mean over games per
size and loss, beside Rusu's Dist-KL figures (108.3 / 101.7 / 83.9 for net1 / net2 / net3 over 10 Atari games).
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluate import geometric_mean_pct
from .runs import atomic_write_bytes
from .teachers import TEACHERS_DIR

CONFIG = Path(__file__).resolve().parent.parent / "data" / "results" / "rusu_sweep.json"
RESULTS = CONFIG.parent / "rusu_results.csv"
PROBES = CONFIG.parent / "data_tau_probe.csv"  # single runs past the demo recipe (more data, tau 1, collection)
MORE_DATA = CONFIG.parent / "more_data_recipes.json"  # which recipe each game's row of the more-data table takes
TABLE_RECIPE = "100k steps, tau 0.01 (the table)"
PROBE_COLUMNS = ["recipe", "teacher", "student_net", "loss", "tau", "beta", "ema", "seed", "env_steps", "updates",
                 "student_params", "compression", "return_mean", "return_std", "teacher_return_mean", "pct_of_teacher",
                 "agreement", "kl", "wall_seconds"]
PROBE_KEY = ["recipe", "teacher", "student_net", "loss", "seed"]
# What one recipe's runs share: a recipe name stands for one way of distilling.
RECIPE_FIELDS = ["tau", "beta", "ema", "env_steps"]
KEY = ["teacher", "student_net", "loss", "tau", "beta", "seed"]
# Longer evaluations of probe or table runs than their cards' 30 episodes (a card's % of teacher moves by ~9 points
# on Seaquest and Asterix from the 30-episode noise of student and teacher alone).
LONG_EVALS = CONFIG.parent / "long_evals.csv"
LONG_EVAL_COLUMNS = ["recipe", "teacher", "student_net", "loss", "seed", "episodes", "eval_seed", "return_mean",
                     "return_std", "teacher_return_mean", "teacher_return_std", "pct_of_teacher", "stalled_episodes",
                     "card_pct_of_teacher", "teacher_card_return_mean"]
LONG_EVAL_KEY = ["recipe", "teacher", "student_net", "loss", "seed", "episodes"]
RUSU_GEOMEAN = {"net1": 108.3, "net2": 101.7, "net3": 83.9}
TARGETS = {"net3": 100.0, "tiny": 95.0}


def load_config(path: str | Path = CONFIG, **overrides) -> dict:
    """The sweep config, with ``teachers: "shipped"`` resolved to the shipped teachers' names; overrides that
    are not None replace fields (teachers, nets, losses, seeds)."""
    config = json.loads(Path(path).read_text())
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["teachers"] == "shipped":
        config["teachers"] = sorted(p.parent.name for p in TEACHERS_DIR.glob("*/card.json"))
    unknown = set(config["losses"]) - {"nll", "mse", "kl"}
    if unknown:
        raise ValueError(f"unknown losses {sorted(unknown)} in {path}; use nll, mse, kl")
    return config


def reproduce(config: dict, out: str | Path, preset: str = "demo", engine: str = "local", **sweep_kwargs):
    """Run the sweep into ``out``; write ``out/rusu_table.csv`` and return (results, table)."""
    from .sweep import sweep

    t0 = time.time()
    results = sweep(config["teachers"], config["nets"], config["losses"], config["seeds"], out, preset, engine,
                    overrides={"tau": config["tau"]}, **sweep_kwargs)
    collected = sweep_kwargs.get("finished_only")  # then the sweep's own wall time is not known here
    table = rusu_table(results, preset=preset, wall_seconds=None if collected else time.time() - t0)
    atomic_write_bytes(Path(out) / "rusu_table.csv", table.to_csv(index=False).encode())
    return results, table


def _machine_line() -> str:
    from .runs import machine

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


def estimate(config: dict, preset: str = "full", probe_steps: int = 100, probe_updates: int = 20,
             seed: int = 0) -> pd.DataFrame:
    """How long each run of the sweep would take at ``preset`` on this machine, from timing a few of its pieces
    (seconds, not a run): one row per teacher x student size with the time of one collection step (the teacher
    labels, the student acts, n_envs envs step, the memory stores) and of one update at the preset's batch size,
    and ``run_seconds`` = steps / n_envs x collection + updates x update. Times are this process's CPU time, so a
    busy machine does not inflate them: with one torch thread they are the wall time on an idle core.
    Evaluations are left out (they add a few per cent at the demo preset). ``sweep_hours`` sums runs over losses
    and seeds."""
    import torch

    from .collect import Collector
    from .distill.loop import default_lr, distill_config, load_teacher, student_spec_for, student_update
    from .distill.losses import get_loss
    from .envs import make_env
    from .memory import ReplayMemory
    from .nets import build

    rows = []
    for teacher_name in config["teachers"]:
        teacher, _, spec = load_teacher(teacher_name)
        base = distill_config(preset, teacher_name)
        envs, _ = make_env(spec.env_id, base.n_envs, seed, **spec.settings)
        obs, _ = envs.reset(seed=seed)
        memory = ReplayMemory(max(4 * probe_steps * base.n_envs, 1_000), spec.obs_shape, spec.obs_dtype, base.n_envs,
                              spec.settings.get("stack_num", 1), extras={"teacher": ((spec.n_actions,), np.float32)})
        collector = Collector(envs, spec, memory, obs, clip_rewards=False)
        for net in config["nets"]:
            student = build(student_spec_for(distill_config(preset, teacher_name, student_net=net), teacher.spec),
                            "pi", seed=seed)
            labels: dict = {}

            def act(o):
                with torch.no_grad():
                    labels["teacher"] = teacher.logits(o).numpy()
                    student.act(o)  # the loop asks both every step (beta picks whose action is taken)
                return labels["teacher"].argmax(-1)

            for _ in range(10):  # warm up: first calls allocate
                collector.step(act, lambda o: labels)
            t0 = time.process_time()
            for _ in range(probe_steps):
                collector.step(act, lambda o: labels)
            t_step = (time.process_time() - t0) / probe_steps
            optimizer = torch.optim.Adam(student.parameters(), lr=base.lr or default_lr(student.spec.family))
            loss_fn, rng = get_loss("kl", config["tau"]), np.random.default_rng(seed)
            student_update(student, optimizer, loss_fn, memory, base.batch_size, rng)
            t0 = time.process_time()
            for _ in range(probe_updates):
                student_update(student, optimizer, loss_fn, memory, base.batch_size, rng)
            t_update = (time.process_time() - t0) / probe_updates
            vector_steps = base.total_steps / base.n_envs
            updates = max(0.0, (base.total_steps - base.learning_starts) / base.n_envs) * base.updates_per_step
            rows.append({"teacher": teacher_name, "env_id": spec.env_id, "student_net": net, "preset": preset,
                         "env_steps": base.total_steps, "updates": int(updates), "batch_size": base.batch_size,
                         "collect_ms": round(1e3 * t_step, 3), "update_ms": round(1e3 * t_update, 3),
                         "run_seconds": round(vector_steps * t_step + updates * t_update, 1)})
        envs.close()
    df = pd.DataFrame(rows)
    runs_per_cell = len(config["losses"]) * len(config["seeds"])
    df["sweep_hours"] = (df["run_seconds"] * runs_per_cell / 3600).round(2)
    return df


def probe_row(run_dir: str | Path, recipe: str) -> dict:
    """A finished student run as a row of the probe file (``PROBES``): its card's figures under a recipe name.
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
        mixed = [f for f in RECIPE_FIELDS if rows[f].nunique() > 1]
        if mixed:
            seen = "; ".join(f"{f} {sorted(rows[f].unique().tolist())}" for f in mixed)
            raise ValueError(f"the recipe {recipe!r} would hold runs that differ in {seen}; a recipe stands for one "
                             "way of distilling, so give these runs a recipe name of their own")
    atomic_write_bytes(into, table.to_csv(index=False).encode())
    return table


def _long_evals(path: Path) -> pd.DataFrame:
    """The long-evaluation file, or no rows. Rows written before ``teacher_card_return_mean`` get it empty: they do
    not say which teacher of their name they were measured against, so no later call reuses their teacher mean."""
    rows = pd.read_csv(path) if path.exists() else pd.DataFrame()
    return rows.reindex(columns=LONG_EVAL_COLUMNS)


def long_evaluation_rows(runs, recipe: str, episodes: int = 100, into: str | Path = LONG_EVALS) -> pd.DataFrame:
    """Evaluate finished student runs over ``episodes`` greedy episodes from their card's eval seed (the card's
    episodes and more), and their teacher over the same episodes, and add the rows to ``into`` under ``recipe``
    (a row of the same recipe, teacher, size, loss, seed and episode count is replaced). The teacher is played once
    per teacher and seed range: this call's other runs and the file's earlier rows of the same teacher reuse its mean
    (``teacher_card_return_mean``, the teacher's card score, tells a replaced teacher of that name apart). Every run is
    checked (``probe_row``) before anything is evaluated; the file is read again and rewritten atomically at the end,
    so rows that another call added meanwhile stay."""
    from tqdm.auto import tqdm

    from .distill.loop import load_teacher
    from .evaluate import evaluate, evaluate_teacher
    from .runs import Run, load_policy

    if episodes < 1:
        raise ValueError(f"episodes {episodes}: give a positive number of evaluation episodes (the cards use 30)")
    into = Path(into)
    cards = [probe_row(r, recipe) for r in runs]  # refuses unfinished runs and runs of a replaced teacher
    old = _long_evals(into)
    teachers = {(t, int(e), int(s), round(c, 6)): (m, sd) for t, e, s, c, m, sd in old[
        ["teacher", "episodes", "eval_seed", "teacher_card_return_mean", "teacher_return_mean", "teacher_return_std"]
    ].dropna(subset=["teacher_card_return_mean"]).itertuples(index=False)}
    rows = []
    for run_dir, card in tqdm(list(zip(runs, cards)), desc=f"{episodes}-episode evaluations", unit="run"):
        run = Run(run_dir)
        settings, seed, env_id = run.config["env_spec"]["settings"], int(run.card["eval_seed"]), run.card["env_id"]
        student = evaluate(load_policy(run_dir), env_id, episodes, seed, settings)
        key = (card["teacher"], episodes, seed, round(card["teacher_return_mean"], 6))
        if key not in teachers:
            policy, teacher_card, _ = load_teacher(run.config["teacher"])
            played = evaluate_teacher(policy, teacher_card, env_id, episodes, seed, settings)
            teachers[key] = (played.mean, played.std)
        t_mean, t_std = teachers[key]
        rows.append({"recipe": recipe, "teacher": card["teacher"], "student_net": card["student_net"],
                     "loss": card["loss"], "seed": card["seed"], "episodes": episodes, "eval_seed": seed,
                     "return_mean": student.mean, "return_std": student.std, "teacher_return_mean": t_mean,
                     "teacher_return_std": t_std, "pct_of_teacher": 100.0 * student.mean / t_mean if t_mean else None,
                     "stalled_episodes": student.stalled, "card_pct_of_teacher": card["pct_of_teacher"],
                     "teacher_card_return_mean": card["teacher_return_mean"]})
    new = pd.DataFrame(rows, columns=LONG_EVAL_COLUMNS)
    # Read again: evaluations take minutes, and rows another call wrote meanwhile must not be lost.
    old = _long_evals(into)
    table = replace_rows(old, new, LONG_EVAL_KEY)
    atomic_write_bytes(into, table.to_csv(index=False).encode())
    return table


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


def recipe_for(recipes: str | dict, net: str) -> str:
    """The recipe a more-data spec names for one student size: one name for all sizes, or {net: name}."""
    recipe = recipes.get(net) if isinstance(recipes, dict) else recipes
    if recipe is None:
        raise ValueError(f"the more-data spec names recipes for {sorted(recipes)}, not for {net}")
    return TABLE_RECIPE if recipe == "table" else recipe


def recipe_label(recipes: str | dict, nets: list[str]) -> str:
    """One recipe for every size as it is; sizes at different recipes as 'RECIPE (net3); RECIPE (tiny)'."""
    names = [recipe_for(recipes, net) for net in nets]
    return names[0] if len(set(names)) == 1 else "; ".join(f"{r} ({net})" for r, net in zip(names, nets))


def recipe_settings(recipe: str) -> dict:
    """A more-data recipe's name as the settings that make it: "2M steps, tau 1, DAgger (linear:1:0), layers 8:16"
    -> {"total_steps": 2000000, "tau": 1.0, "beta": "linear:1:0", "layers": "8:16"}; "table" is the demo sweep's
    100k steps at tau 0.01. A part it does not know (a probe's "EMA 0.999", "lr 3e-4") fails, naming it."""
    name = TABLE_RECIPE if recipe == "table" else recipe
    settings = {"beta": "1"}
    for part in name.removesuffix(" (the table)").split(", "):
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)([kM]) steps", part):
            settings["total_steps"] = round(float(m[1]) * {"k": 1e3, "M": 1e6}[m[2]])
        elif m := re.fullmatch(r"tau (\S+)", part):
            settings["tau"] = float(m[1])
        elif m := re.fullmatch(r"DAgger \((\S+)\)", part):
            settings["beta"] = m[1]
        elif m := re.fullmatch(r"layers (\S+)", part):
            settings["layers"] = m[1]
        else:
            raise ValueError(f"recipe {recipe!r}: {part!r} is not a part a sweep can make (steps, tau, DAgger, "
                             f"layers); run it with workbench distill and its --set flags instead")
    needed = {"total_steps": "env steps (e.g. 2M steps)", "tau": "tau"}
    missing = [said for key, said in needed.items() if key not in settings]
    if missing:
        raise ValueError(f"recipe {recipe!r} does not say its {' or '.join(missing)}; name them as the other "
                         f"recipes do")
    return settings


def more_data_commands(spec: dict | None = None, seeds=(0, 1, 2), out: str = "runs/more-data") -> list[str]:
    """The sweeps that make the more-data table's runs: one per game and recipe, student sizes that differ only in
    shape in the same sweep (``--layers net3=12:24 tiny=8:16``)."""
    spec = spec or json.loads(MORE_DATA.read_text())
    commands = []
    for game, recipes in spec["recipes"].items():
        groups: dict[tuple, list[str]] = {}
        settings = {net: recipe_settings(recipe_for(recipes, net)) for net in spec["nets"]}
        for net, s in settings.items():
            groups.setdefault((s["total_steps"], s["tau"], s["beta"]), []).append(net)
        for (steps, tau, beta), nets in groups.items():
            layers = [f"{net}={settings[net]['layers']}" for net in nets if "layers" in settings[net]]
            commands.append(
                f"workbench --threads 1 sweep --teacher {game} --nets {' '.join(nets)} --losses {spec['loss']} "
                f"--seeds {' '.join(map(str, seeds))} --total-steps {steps} --tau {tau:g}"
                + ("" if beta == "1" else f" --betas {beta}") + (f" --layers {' '.join(layers)}" if layers else "")
                + f" --out {out}/{game}")
    return commands


def more_data_table(spec: dict | None = None, results: pd.DataFrame | None = None,
                    probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """% of teacher per game with each game at the recipe ``spec`` names for it: "table" (the demo sweep's runs,
    100k env steps and tau 0.01) or a recipe in the probe file (say "1M steps, tau 1"), or one such name per student
    size ({"net3": ..., "tiny": ...}: a size measured better at another recipe, say another shape). ``spec`` (default
    ``MORE_DATA``) also names the loss, the student sizes and games to leave out of a second geometric mean.
    One row per game (mean, std and seeds per size, and the env steps), then the geometric means and the targets."""
    spec = spec or json.loads(MORE_DATA.read_text())
    loss, nets = spec["loss"], spec["nets"]
    results = pd.read_csv(RESULTS, dtype={"beta": str}) if results is None else results
    probes = pd.read_csv(PROBES, dtype={"beta": str}) if probes is None else probes
    rows = []
    for game, recipes in spec["recipes"].items():
        row, env_steps = {"game": game, "recipe": recipe_label(recipes, nets)}, []
        for net in nets:
            recipe = recipe_for(recipes, net)
            if recipe == TABLE_RECIPE:
                # The demo table's recipe: a results file may also hold a sweep's runs at another tau or beta.
                runs = results[(results["teacher"] == game) & (results["loss"] == loss) & (results["tau"] == 0.01)
                               & (results["beta"].astype(str) == "1")]
            else:
                runs = probes[(probes["teacher"] == game) & (probes["recipe"] == recipe) & (probes["loss"] == loss)]
            runs = runs[runs["student_net"] == net]
            pct = runs.set_index("seed")["pct_of_teacher"]
            if pct.empty:
                raise ValueError(f"no {loss} {net} runs of {game} under the recipe {recipe!r}; add them with "
                                 "`scripts/probes.py add --recipe RECIPE RUN...` or name another recipe")
            row |= {net: pct.mean(), f"{net}_std": pct.std(), f"{net}_seeds": len(pct)}
            env_steps.append(int(runs["env_steps"].max()))
        row["env_steps"] = max(env_steps)
        rows.append(row)
    games = pd.DataFrame(rows)
    summary = [("geometric mean", games)]
    if spec.get("without"):
        summary.append((f"geometric mean without {', '.join(spec['without'])}",
                        games[~games["game"].isin(spec["without"])]))
    extra = [{"game": name, **{net: geometric_mean_pct(part[net]) for net in nets},
              **{f"{net}_seeds": part[f"{net}_seeds"].min() for net in nets}} for name, part in summary]
    extra.append({"game": "target (issue 5)", **{net: TARGETS.get(net) for net in nets}})
    table = pd.concat([games, pd.DataFrame(extra)], ignore_index=True)
    counts = [c for c in table.columns if c.endswith("_seeds")] + ["env_steps"]
    table[counts] = table[counts].astype("Int64")
    return table.round({c: 1 for c in table.columns if c.startswith(tuple(nets)) and not c.endswith("_seeds")})


def long_eval_table(spec: dict | None = None, long_evals: pd.DataFrame | None = None,
                    episodes: int = 100) -> pd.DataFrame:
    """The more-data table again from longer evaluations (``long_evaluation_rows``): each game of ``spec`` at its
    recipe, % of teacher over ``episodes`` episodes of student and teacher (mean, std and seeds per size), beside the
    same runs' 30-episode cards (``card_<net>``). A game is in it only where every size has such rows; the geometric
    means say how many of ``spec``'s games they cover. Same shape as ``more_data_table``, so
    ``plots.more_data_figure`` draws it."""
    spec = spec or json.loads(MORE_DATA.read_text())
    loss, nets = spec["loss"], spec["nets"]
    if long_evals is None:
        long_evals = pd.read_csv(LONG_EVALS) if LONG_EVALS.exists() else pd.DataFrame(columns=LONG_EVAL_COLUMNS)
    long_evals = long_evals[(long_evals["loss"] == loss) & (long_evals["episodes"] == episodes)]
    rows = []
    for game, recipes in spec["recipes"].items():
        runs = long_evals[long_evals["teacher"] == game]
        by_net = {net: runs[(runs["student_net"] == net) & (runs["recipe"] == recipe_for(recipes, net))]
                  .set_index("seed") for net in nets}
        if any(r.empty for r in by_net.values()):
            continue
        row = {"game": game, "recipe": recipe_label(recipes, nets), "episodes": episodes,
               "teacher_return": pd.concat(by_net.values())["teacher_return_mean"].mean()}
        for net, r in by_net.items():
            row |= {net: r["pct_of_teacher"].mean(), f"{net}_std": r["pct_of_teacher"].std(),
                    f"{net}_seeds": len(r), f"card_{net}": r["card_pct_of_teacher"].mean()}
        rows.append(row)
    if not rows:
        raise ValueError(f"no {episodes}-episode evaluations of {loss} runs at the spec's recipes; add them with "
                         "`scripts/probes.py evaluate --recipe RECIPE --episodes N RUN...`")
    games = pd.DataFrame(rows)
    n, of = len(games), len(spec["recipes"])
    parts = [(f"geometric mean, {n} of {of} games" if n < of else "geometric mean", games)]
    left_out = [g for g in spec.get("without", []) if g in set(games["game"])]
    if left_out:
        part = games[~games["game"].isin(left_out)]
        parts.append((f"geometric mean without {', '.join(left_out)}", part))
    extra = [{"game": name, **{net: geometric_mean_pct(part[net]) for net in nets},
              **{f"card_{net}": geometric_mean_pct(part[f"card_{net}"]) for net in nets},
              **{f"{net}_seeds": part[f"{net}_seeds"].min() for net in nets}} for name, part in parts]
    extra.append({"game": "target (issue 5)", **{net: TARGETS.get(net) for net in nets}})
    table = pd.concat([games, pd.DataFrame(extra)], ignore_index=True)
    counts = [c for c in table.columns if c.endswith("_seeds")] + ["episodes"]
    table[counts] = table[counts].astype("Int64")
    return table.round({c: 1 for c in table.columns if c not in counts and c not in ("game", "recipe")})
