"""One collection, many students. Rusu's teacher-driven collection (beta 1) does not depend on the student, so the
students of a sweep that share a teacher and a collection recipe, and differ in size, loss, temperature, step size or
the seed of their initial weights and minibatches, can all learn from one stream: the teacher plays and labels each
state once, and every student draws its own minibatches from the same memory, on one device.

Each student still writes its own run folder (config.json, metrics, model, card); its config.json and card say in
``shared_data`` that it shared its data, with which runs, and the collection's seed (the group's lowest). The
collection's own state (the memory and its RNG) is checkpointed in a folder of its own beside the runs, at the steps
the students checkpoint, so an interrupted group resumes with every student at the same step. Runs whose data depend
on the student (beta < 1) keep their own collection: ``distill``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..agents.common import progress, resume_seed, seed_everything
from ..collect import make_collector
from ..hardware import place
from ..runs import Checkpointer, Run, read_json
from .engine import Schedule, collect_step, teacher_states
from .loop import DistillConfig, StudentRun, beta_schedule, setup_collection

# What the collection is made of: students that share data must agree on all of these (the schedule fields too, so
# that every student logs, evaluates and checkpoints at the steps the collection is at).
DATA_FIELDS = ("teacher", "total_steps", "n_envs", "overlap", "memory_size", "teacher_epsilon", "heldout_size",
               "log_every", "eval_every", "eval_episodes", "eval_seed", "checkpoint_every", "device")


def teacher_driven(config: DistillConfig) -> bool:
    """Whether the run's data leave out the student: the teacher acts on every step (beta 1 throughout)."""
    beta = beta_schedule(config.beta)
    return beta(0.0) == 1.0 and beta(1.0) == 1.0


def data_key(config: DistillConfig) -> tuple:
    """Runs with equal keys can learn from one collection."""
    return tuple(getattr(config, f) for f in DATA_FIELDS)


def check_group(configs: list[DistillConfig]) -> None:
    """A ValueError naming what keeps these runs from sharing one collection."""
    if not configs:
        raise ValueError("no runs to train from a shared collection")
    student_driven = [i for i, c in enumerate(configs) if not teacher_driven(c)]
    if student_driven:
        raise ValueError(f"runs {student_driven} have beta {configs[student_driven[0]].beta!r}: their data depend on "
                         "the student, so they cannot share a collection; run them with `distill` (or a sweep, which "
                         "gives them their own)")
    for f in DATA_FIELDS:
        values = sorted({str(getattr(c, f)) for c in configs})
        if len(values) > 1:
            raise ValueError(f"runs that share a collection must agree on {f}, and these have {', '.join(values)}; "
                             "give them one value, or train them apart")


def distill_shared(configs: list[DistillConfig], outs: list[str | Path], collection: str | Path,
                   resume: bool = False, progress_bar: bool = True, group: list[str] | None = None,
                   data_seed: int | None = None) -> list[dict]:
    """Train every config's student from one teacher-driven collection; each writes its run folder in ``outs``,
    the collection's checkpoint goes to the folder ``collection``. Returns the students' cards, in order.
    ``group`` and ``data_seed``: the whole group's run folders and collection seed where only some of it is left to
    run (the others finished before an interruption); by default ``outs`` and their lowest seed."""
    check_group(configs)
    if len(outs) != len(configs) or len({str(Path(o)) for o in outs}) != len(outs):
        raise ValueError("give one distinct run folder per config")
    outs = [Path(o) for o in outs]
    group = [Path(o) for o in group] if group else outs
    if resume:
        _check_together(Path(collection), outs)
    first = configs[0]
    data_seed = min(c.seed for c in configs) if data_seed is None else data_seed
    seed_everything(data_seed)
    device, teacher, teacher_card, env, memory = setup_collection(first)
    replay = place(device, memory)["replay_memory"]
    shared = {"collection": str(collection), "collection_seed": data_seed, "students": len(group)}
    students = [StudentRun(c, out, teacher, teacher_card, env, device, resume, replay_memory=replay,
                           shared_data={**shared, "with": [str(o) for o in group if o != out]})
                for c, out in zip(configs, outs)]

    rng = np.random.default_rng(data_seed)  # the collection's draws; each student samples with its own generator
    col_run = Run(collection)
    col_run.write_config({**{f: getattr(first, f) for f in DATA_FIELDS}, "collection_seed": data_seed,
                          "runs": [str(o) for o in group], "env_spec": env.to_dict()})
    col_checkpoint = Checkpointer(col_run, memories={"memory": memory}, rng=rng)
    step = 0
    if resume:
        step = (col_checkpoint.restore() or {}).get("step", 0)
        for s in students:
            s.restore()
    held = teacher_states(teacher, env, first.heldout_size, data_seed + 777_777, first.teacher_epsilon)
    collector = make_collector(env, first.n_envs, data_seed, memory, students[0].config.overlap,
                               resume_seed(data_seed, step), clip_rewards=False)
    t0 = time.perf_counter()
    for s in students:
        s.start(t0)
    schedule = Schedule(step, checkpoint=first.checkpoint_every)
    bar = progress(first.total_steps, step, f"distill {len(students)} students, one collection", progress_bar)
    while step < first.total_steps:
        collect_step(collector, teacher, rng, first.teacher_epsilon)  # no student: the teacher acts everywhere
        step += first.n_envs
        bar.update(first.n_envs)
        done = step >= first.total_steps
        for s in students:
            s.learn(step, memory)
            s.log(held, 1.0, done)
            s.checkpoint(done)  # the students' schedules are the collection's: all checkpoint at this step or none
        if schedule.due("checkpoint", step, done):
            col_checkpoint.save({"step": step, "wall_seconds": time.perf_counter() - t0})
    bar.close()
    collector.close()
    wall = students[0].wall()
    return [s.finish(held, wall) for s in students]


def _check_together(collection: Path, outs: list[Path]) -> None:
    """Before anything is written: a group resumes only if every student's checkpoint is at the collection's step."""
    def step_of(folder: Path) -> int:
        path = folder / "checkpoint.json"
        return int(read_json(path).get("step", 0)) if path.exists() else 0

    step = step_of(collection)
    behind = {str(o): at for o in outs if (at := step_of(o)) != step}
    if behind:
        raise ValueError(f"the collection in {collection} stopped at step {step}, but "
                         f"{', '.join(f'{r} at {s}' for r, s in behind.items())}: a group resumes together; delete "
                         "those runs' folders to run them on their own, or the whole group's to start it again")


def groups(configs: list[DistillConfig]) -> tuple[list[list[int]], list[int]]:
    """(indices of the runs that can share a collection, by collection; indices of the runs that need their own)."""
    by_key: dict[tuple, list[int]] = {}
    alone = []
    for i, c in enumerate(configs):
        if teacher_driven(c):
            by_key.setdefault(data_key(c), []).append(i)
        else:
            alone.append(i)
    return list(by_key.values()), alone

