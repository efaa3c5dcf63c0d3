"""Shipped teachers (``data/teachers/<name>/``, each a run folder) and the demo that uses the default one."""

from __future__ import annotations

import json
from pathlib import Path

TEACHERS_DIR = Path(__file__).resolve().parent.parent / "data" / "teachers"
STUDENTS_DIR = Path(__file__).resolve().parent.parent / "data" / "students"
DEFAULT_TEACHER = "minatar-breakout"
# Teachers still training: interrupted run folders (config, curve, resume checkpoint; no card, no model) that a
# later session copies to runs/ and continues with ``workbench train ... --resume``; a fresh checkout keeps no runs/.
IN_TRAINING_DIR = Path(__file__).resolve().parent.parent / "data" / "in_training"


def teacher_path(name: str) -> Path:
    """Path of a shipped run by name: a teacher (data/teachers) or a student (data/students); a run folder
    path is returned as is."""
    p = Path(name)
    if p.is_dir():
        return p
    for root in (TEACHERS_DIR, STUDENTS_DIR):
        if (root / name).is_dir():
            return root / name
    known = sorted(d.name for root in (TEACHERS_DIR, STUDENTS_DIR) if root.exists() for d in root.iterdir()
                   if d.is_dir())
    raise FileNotFoundError(f"no run {name!r}: not a run folder and not shipped; shipped: {known}")


def teacher_card(name: str) -> dict:
    """The card.json of a shipped teacher (by name) or of any run folder."""
    return json.loads((teacher_path(name) / "card.json").read_text())


def list_teachers():
    import pandas as pd

    rows = []
    for card_path in sorted(TEACHERS_DIR.glob("*/card.json")):
        c = json.loads(card_path.read_text())
        rows.append({"name": card_path.parent.name, "env": c["env_id"], "algo": c["algo"], "params": c["params"],
                     "return": f"{c['return_mean']:.1f} ± {c['return_std']:.1f} (n={c['return_n']})",
                     "paper_dqn": c.get("paper_dqn"),
                     "env_steps": c["env_steps"], "train_minutes": round(c["wall_seconds"] / 60, 1),
                     "source": c.get("source", "workbench train")})
    return pd.DataFrame(rows)


def list_in_training():
    """Teachers still training (``data/in_training``): env, steps reached of the total, and the training return of
    the last logged stretch (per game, under the exploration of the policy being trained)."""
    import pandas as pd

    rows = []
    for ckpt in sorted(IN_TRAINING_DIR.glob("*/checkpoint.json")):
        config = json.loads((ckpt.parent / "config.json").read_text())
        state = json.loads(ckpt.read_text())
        curve = [json.loads(line) for line in (ckpt.parent / "metrics.jsonl").read_text().splitlines()]
        returns = [r["charts/episodic_return"] for r in curve if r.get("charts/episodic_return") is not None]
        rows.append({"name": ckpt.parent.name, "env": config["env_id"], "preset": config["preset"],
                     "seed": config["seed"], "env_steps": state["global_step"], "of": config["total_steps"],
                     "training_return": round(returns[-1], 1) if returns else None,
                     "train_minutes": round(state["wall_seconds"] / 60, 1)})
    return pd.DataFrame(rows, columns=["name", "env", "preset", "seed", "env_steps", "of", "training_return",
                                       "train_minutes"])


SHIPPED_FILES = ("card.json", "config.json", "metrics.jsonl", "model.safetensors")
# The published DQN figure each shipped teacher is held against.
# MinAtar: Young & Tian 2019 (arXiv:1903.03176, Fig. 2) give DQN as learning curves, not a table. These are the
# curves' final values as read off the figure by nickgreenquist/deep-rl-from-scratch (README, "Paper ~" column),
# which reproduced them within about 5% on all five games. They are training returns under epsilon 0.1 on the v0
# envs (full action set, sticky actions 0.1) after 5M frames; a greedy evaluation such as a card's scores higher
# for the same policy (that reproduction: SpaceInvaders greedy ~91 against 45 under epsilon), so they are a floor.
# Atari: Nature DQN (Mnih et al. 2015, Extended Data Table 2), 50M frames, evaluated at epsilon 0.05.
PAPER_DQN = {
    "MinAtar/Asterix-v1": 16.5, "MinAtar/Breakout-v1": 10.0, "MinAtar/Freeway-v1": 50.5,
    "MinAtar/Seaquest-v1": 20.0, "MinAtar/SpaceInvaders-v1": 45.0,
    "ALE/Pong-v5": 18.9, "ALE/Breakout-v5": 401.2,
}
PAPER_DQN_SOURCE = {
    "minatar": ("Young & Tian 2019 (arXiv:1903.03176) Fig. 2: DQN after 5M frames, read off the figure (the paper has "
                "no table; reading by nickgreenquist/deep-rl-from-scratch). A training return under epsilon 0.1 on "
                "MinAtar v0; this card's return is greedy on v1 (minimal action set), which scores higher for the "
                "same policy: treat the figure as a floor."),
    "ale": "Mnih et al. 2015 (Nature DQN), Extended Data Table 2: 50M frames, evaluated at epsilon 0.05.",
}


def paper_dqn(env_id: str) -> tuple[float | None, str | None]:
    """(the published DQN figure for ``env_id``, where it comes from); (None, None) where there is none."""
    family = "minatar" if env_id.startswith("MinAtar/") else "ale" if env_id.startswith("ALE/") else None
    return PAPER_DQN.get(env_id), PAPER_DQN_SOURCE.get(family) if env_id in PAPER_DQN else None


def ship(run: str | Path, name: str, how_trained: str, source: str = "workbench train") -> Path:
    """Copy a finished run into ``data/teachers/<name>``: weights, config, curve and card, never its resume
    checkpoint. The card gains ``source`` and ``how_trained``; it already holds the 30-episode evaluation."""
    import shutil

    from .runs import atomic_write_json, load_policy

    run = Path(run)
    if not (run / "card.json").exists():
        raise FileNotFoundError(f"{run} has no card.json: finish the run first (workbench train ... --resume)")
    load_policy(run)  # fails on a corrupt or foreign model before anything is copied
    card = json.loads((run / "card.json").read_text())
    if card.get("return_n", 0) < 30:
        raise ValueError(f"{run} was evaluated on {card.get('return_n')} episodes; ship teachers with at least 30")
    dest = TEACHERS_DIR / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in SHIPPED_FILES:
        if f != "card.json":
            shutil.copyfile(run / f, dest / f)
    card.update(source=source, how_trained=how_trained)
    figure, where = paper_dqn(card["env_id"])
    if figure is not None:
        card.update(paper_dqn=figure, paper_dqn_source=where)
    atomic_write_json(dest / "card.json", card)
    return dest


def demo(out: str = "reports/tour.html") -> int:
    """The main job: run the tour notebook on the shipped default teacher as a report; print teacher vs student."""
    from .report import report

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "00_tour.ipynb"
    runs = Path("runs/demo").resolve()
    card = teacher_card(DEFAULT_TEACHER)
    print(f"Teacher {DEFAULT_TEACHER}: {card['env_id']}, {card['algo']}, {card['params']:,} params, "
          f"return {card['return_mean']:.2f} ± {card['return_std']:.2f} over {card['return_n']} episodes "
          f"(trained {card['env_steps']:,} env steps in {card['wall_seconds'] / 60:.1f} min)")
    print("running notebooks/00_tour.ipynb (distils two students live, then plays and plots them)...")
    before = set(runs.glob("*")) if runs.exists() else set()
    path = report(notebook, Path(out), {"out_dir": str(runs), "teacher": DEFAULT_TEACHER})
    new = sorted(set(runs.glob("*")) - before)
    for run in new[-1:]:
        print(f"\n{'student':10}{'params':>10}{'share':>8}{'return':>9}{'teacher':>9}{'% teacher':>11}{'agree':>8}")
        for c_path in sorted(run.glob("*/card.json")):
            s = json.loads(c_path.read_text())
            print(f"{c_path.parent.name:10}{s['student_params']:>10,}{s['compression']:>8.1%}{s['return_mean']:>9.2f}"
                  f"{s['teacher_return_mean']:>9.2f}{s['pct_of_teacher']:>10.1f}%{s['agreement']:>8.1%}")
        print(f"(teacher: {card['params']:,} params; both evaluated on the same seeds; run folders in {run})")
    print(f"\nreport: {path.resolve()}")
    return 0


def load(name: str):
    """The policy of a shipped teacher or student (by name) or of any run folder."""
    from .runs import load_policy

    return load_policy(teacher_path(name))
