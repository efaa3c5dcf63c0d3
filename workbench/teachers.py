"""Shipped teachers (``data/teachers/<name>/``, each a run folder) and the demo that uses the default one."""

from __future__ import annotations

import json
from pathlib import Path

TEACHERS_DIR = Path(__file__).resolve().parent.parent / "data" / "teachers"
STUDENTS_DIR = Path(__file__).resolve().parent.parent / "data" / "students"
DEFAULT_TEACHER = "minatar-breakout"


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
                     "env_steps": c["env_steps"], "train_minutes": round(c["wall_seconds"] / 60, 1),
                     "source": c.get("source", "workbench train")})
    return pd.DataFrame(rows)


SHIPPED_FILES = ("card.json", "config.json", "metrics.jsonl", "model.safetensors")
MINATAR_DQN_NOTE = ("The MinAtar paper's DQN figure (Young & Tian 2019) could not be retrieved on this machine "
                    "(no paper downloads; not in the searchable corpus), so it is not quoted here.")


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
    if card["env_id"].startswith("MinAtar/"):
        card.setdefault("minatar_paper_dqn", None)
        card.setdefault("minatar_paper_dqn_note", MINATAR_DQN_NOTE)
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
