"""Shipped teachers (``data/teachers/<name>/``, each a run folder) and the demo that uses the default one."""

from __future__ import annotations

import json
from pathlib import Path

TEACHERS_DIR = Path(__file__).resolve().parent.parent / "data" / "teachers"
DEFAULT_TEACHER = "minatar-breakout"


def teacher_path(name: str) -> Path:
    """Path of a shipped teacher by name (or a run folder path, returned as is)."""
    p = Path(name)
    if p.is_dir():
        return p
    q = TEACHERS_DIR / name
    if not q.is_dir():
        known = sorted(d.name for d in TEACHERS_DIR.iterdir() if d.is_dir()) if TEACHERS_DIR.exists() else []
        raise FileNotFoundError(f"no teacher {name!r}: not a run folder and not shipped; shipped: {known}")
    return q


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


def demo(out: str = "runs/demo") -> int:
    """The main job on the shipped default: distil a 4% student from the MinAtar Breakout teacher, compare."""
    import shutil

    from .distill.loop import distill, distill_config

    path = teacher_path(DEFAULT_TEACHER)
    card = json.loads((path / "card.json").read_text())
    print(f"Teacher {DEFAULT_TEACHER}: {card['env_id']}, {card['algo']}, {card['params']:,} params, "
          f"return {card['return_mean']:.2f} ± {card['return_std']:.2f} over {card['return_n']} episodes "
          f"(trained {card['env_steps']:,} env steps in {card['wall_seconds'] / 60:.1f} min)")
    shutil.rmtree(out, ignore_errors=True)
    config = distill_config("demo", str(path), student_net="net3", loss="kl", eval_every=0)
    s = distill(config, out)
    print(f"\n{'':14}{'teacher':>12}{'student':>12}")
    print(f"{'params':14}{s['teacher_params']:>12,}{s['student_params']:>12,}")
    print(f"{'return':14}{s['teacher_return_mean']:>12.2f}{s['return_mean']:>12.2f}   (same {s['return_n']} seeds)")
    print(f"compression {s['compression']:.1%} of the teacher's parameters; student reaches "
          f"{s['pct_of_teacher']:.1f}% of the teacher's return; action agreement {s['agreement']:.1%} on held-out "
          f"teacher states; {s['teacher_queries']:,} teacher queries, {s['wall_seconds']:.0f} s")
    print(f"run folder: {out}")
    return 0
