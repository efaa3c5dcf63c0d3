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


def demo() -> int:
    """The main job on the shipped default: evaluate the MinAtar Breakout teacher on fixed seeds, show its card."""
    from .evaluate import evaluate
    from .runs import Run, load_policy

    path = teacher_path(DEFAULT_TEACHER)
    run, policy = Run(path), load_policy(path)
    card = run.card
    print(f"Shipped teacher {DEFAULT_TEACHER}: {card['env_id']}, {card['algo']}, {policy.n_params:,} params, "
          f"trained {card['env_steps']:,} env steps in {card['wall_seconds'] / 60:.1f} min")
    print(f"  card: return {card['return_mean']:.2f} ± {card['return_std']:.2f} over {card['return_n']} episodes")
    result = evaluate(policy, card["env_id"], 10, card["eval_seed"], card["env_settings"])
    print(f"  now:  return {result.mean:.2f} ± {result.std:.2f} over 10 episodes (same seeds as the card's first 10)")
    print(json.dumps({k: card[k] for k in ("env_id", "algo", "params", "env_steps", "wall_seconds",
                                            "return_mean", "return_std", "return_n")}))
    return 0
