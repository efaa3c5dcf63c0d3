"""Many distillation runs: student size x loss x seed (x teacher). Local by default, Ray for a cluster.

Each run is a folder ``OUT/<teacher>/<net>-<loss>-s<seed>``; a finished one (card.json present) is reused if it ran
the same config (a finished run at another tau or step count is refused, not mixed in), and an interrupted one
resumes from its checkpoint, so a sweep started again loses nothing.

Runs with a teacher-driven collection (beta 1, Rusu's setting) that share a teacher learn from one collection
(``distill.shared``): the teacher plays and labels once, in ``OUT/<teacher>/collection-s<seed>``, and every student
samples its own minibatches from it. ``share_data=False`` gives each run its own collection, as runs of
``workbench distill`` have; runs whose data depend on the student (beta < 1) always have their own.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pandas as pd

from .agents.common import BOOKKEEPING, saved_config
from .distill.engine import default_tau, load_teacher
from .distill.loop import distill, distill_config, student_spec_for
from .nets import NetSpec, format_layers, size_tag
from .plots import compression_figure, method_label
from .runs import atomic_write_bytes
from .teachers import teacher_card

CARD_FIELDS = ["teacher", "env_id", "student_net", "teacher_params", "student_params", "compression", "loss", "tau",
               "beta", "ema", "seed", "frames", "env_steps", "updates", "teacher_queries", "wall_seconds", "return_mean",
               "return_std", "teacher_return_mean", "pct_of_teacher", "agreement", "kl"]


def plan(teachers, nets, losses, seeds, out: str | Path, betas=("1",), layers: dict | None = None) -> list[dict]:
    """One job per teacher x net x loss x beta x seed; the folder name says everything but the default beta and
    the size presets' own shapes. ``layers`` gives a size preset another shape at its size: {"tiny": "8:16"}."""
    layers = layers or {}
    unknown = sorted(set(layers) - set(nets))
    if unknown:
        raise ValueError(f"layers given for {', '.join(unknown)}, which this sweep does not run (nets: "
                         f"{', '.join(nets)}); give them as NET=CONV:HIDDEN for one of its nets")
    jobs = []
    for teacher, net, loss, beta, seed in itertools.product(teachers, nets, losses, betas, seeds):
        name = Path(teacher).name
        shape = layers.get(net)
        tag = f"{size_tag(net, shape)}-{loss}" + ("" if str(beta) == "1" else f"-b{str(beta).replace(':', '_')}")
        jobs.append({"teacher": str(teacher), "net": net, "layers": shape, "loss": loss, "beta": str(beta),
                     "seed": int(seed), "out": str(Path(out) / name / f"{tag}-s{seed}")})
    return jobs


def _refuse_another_config(out: Path, config) -> None:
    """A finished run is a sweep's result only if it ran this config: folder names carry teacher, net, loss, beta
    and seed, not tau, env steps or memory size, so a sweep reusing an --out would silently mix recipes."""
    saved = saved_config(json.loads((out / "config.json").read_text()), config)
    mine = json.loads(json.dumps(dataclasses.asdict(config)))
    # None asks for the default, which the run resolved (lr: the student family's) and saved.
    differ = [k for k in mine if k not in BOOKKEEPING and k in saved and mine[k] is not None and saved[k] != mine[k]]
    if differ:
        raise ValueError(f"{out} holds a finished run at {', '.join(f'{k} {saved[k]}' for k in differ)}, and this "
                         f"sweep asks for {', '.join(f'{k} {mine[k]}' for k in differ)}; give the sweep its own --out")


def check_shapes(jobs: list[dict], preset: str, overrides: dict) -> None:
    """A shape that does not fit its size preset fails before any run starts, not after hours of the others."""

    specs = {}
    for job in jobs:
        if job.get("layers") is None:
            continue
        if job["teacher"] not in specs:
            specs[job["teacher"]] = load_teacher(job["teacher"])[0].spec
        config = distill_config(preset, job["teacher"], student_net=job["net"], student_layers=job["layers"],
                                **overrides)
        student_spec_for(config, specs[job["teacher"]])


def job_config(job: dict, preset: str, overrides: dict):
    config = distill_config(preset, job["teacher"], student_net=job["net"], student_layers=job.get("layers"),
                            loss=job["loss"], seed=job["seed"], beta=job.get("beta", "1"), **overrides)
    if config.tau is None:  # the teacher's default, settled before a finished run is compared with this recipe
        config = dataclasses.replace(config, tau=default_tau(teacher_card(job["teacher"])))
    return config


def finished_card(job: dict, config) -> dict | None:
    """The card of a finished run of this config (None if it has not finished); a finished run of another recipe in
    the job's folder is refused."""
    out = Path(job["out"])
    if not (out / "card.json").exists():
        return None
    _refuse_another_config(out, config)
    return json.loads((out / "card.json").read_text())


def run_job(job: dict, preset: str, overrides: dict) -> dict:
    """One student run with its own collection (skipped if finished, resumed if interrupted); returns its card."""
    import torch

    torch.set_num_threads(1)  # sweeps parallelise over runs, not inside one
    out = Path(job["out"])
    config = job_config(job, preset, overrides)
    card = finished_card(job, config)
    if card is not None:
        return card
    return distill(config, out, resume=(out / "checkpoint.json").exists(), progress_bar=False)


def collection_folder(jobs: list[dict]) -> Path:
    """Where a group's shared collection keeps its checkpoint: beside its runs, named by its seed (the lowest)."""
    return Path(jobs[0]["out"]).parent / f"collection-s{min(j['seed'] for j in jobs)}"


def run_group(jobs: list[dict], preset: str, overrides: dict, progress_bar: bool = False) -> list[dict]:
    """Students that learn from one shared collection (resumed together if interrupted); returns their cards."""
    import torch

    from .distill.shared import distill_shared

    torch.set_num_threads(1)
    configs = [job_config(job, preset, overrides) for job in jobs]
    collection = Path(jobs[0].get("collection") or collection_folder(jobs))
    resume = (collection / "checkpoint.json").exists() or any((Path(j["out"]) / "checkpoint.json").exists()
                                                                for j in jobs)
    return distill_shared(configs, [j["out"] for j in jobs], collection, resume=resume, progress_bar=progress_bar,
                          group=jobs[0].get("group"), data_seed=jobs[0].get("collection_seed"))


def schedule(jobs: list[dict], preset: str, overrides: dict, share_data: bool) -> tuple[dict, list, list]:
    """(cards of finished runs by job index, groups of job indices that share a collection, jobs run alone)."""
    from .distill.shared import groups

    configs = [job_config(job, preset, overrides) for job in jobs]
    done = {i: card for i, (job, c) in enumerate(zip(jobs, configs)) if (card := finished_card(job, c)) is not None}
    todo = [i for i in range(len(jobs)) if i not in done]
    if not share_data:
        return done, [], todo
    # Groups are made over every run of the sweep, finished or not, so that a group interrupted while its students
    # wrote their cards goes on with the same collection folder and as a group, however many of it are left.
    shared, alone = groups(configs)
    together = []
    for g in shared:
        if len(g) == 1:
            alone.extend(g)
            continue
        members = [jobs[i] for i in g]
        whole = {"collection": str(collection_folder(members)), "group": [j["out"] for j in members],
                 "collection_seed": min(j["seed"] for j in members)}
        left = [i for i in g if i not in done]
        for i in left:
            jobs[i].update(whole)
        if left:
            together.append(left)
    return done, together, sorted(i for i in alone if i not in done)


def sweep(teachers, nets, losses, seeds, out: str | Path, preset: str = "demo", engine: str = "local",
          address: str | None = None, num_cpus: int | None = None, overrides: dict | None = None,
          betas=("1",), finished_only: bool = False, layers: dict | None = None, share_data: bool = True,
          gpus_per_task: float | None = None) -> pd.DataFrame:
    """Run every combination; write OUT/results.csv and OUT/compression.html; return the results table.
    ``finished_only``: run nothing, collect the combinations that have finished (a sweep still going, or cut off).
    ``layers``: a shape of its own for a size preset, {"tiny": "8:16"} (within 15% of the preset's size).
    ``share_data``: teacher-driven runs of one teacher learn from one collection (see the module's docstring).
    ``gpus_per_task``: the GPU share each Ray task asks for (default: 1 with a CUDA ``device``, else none)."""
    out = Path(out)
    jobs = plan(teachers, nets, losses, seeds, out, betas, layers)
    overrides = overrides or {}
    if engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {engine!r}; choose local or ray")
    if finished_only:
        jobs = [job for job in jobs if (Path(job["out"]) / "card.json").exists()]
        if not jobs:
            raise ValueError(f"no finished runs of this sweep in {out}; run it without --finished-only first")
        cards = [json.loads((Path(job["out"]) / "card.json").read_text()) for job in jobs]
    else:
        check_shapes(jobs, preset, overrides)
        done, together, alone = schedule(jobs, preset, overrides, share_data)
        tasks = [("group", [jobs[i] for i in g], g) for g in together] + [("job", jobs[i], [i]) for i in alone]
        if engine == "local":
            from tqdm.auto import tqdm

            results = [run_group(what, preset, overrides, progress_bar=True) if kind == "group"
                       else [run_job(what, preset, overrides)] for kind, what, _ in tqdm(tasks, desc="sweep", unit="task")]
        else:
            results = _run_ray(tasks, preset, overrides, address, num_cpus, gpus_per_task,
                               str(overrides.get("device", "auto")))
        for (_, _, idx), cards_ in zip(tasks, results):
            done.update(zip(idx, cards_))
        cards = [done[i] for i in range(len(jobs))]
    # A card written before the weight average existed ran without it.
    df = pd.DataFrame([{k: c.get(k, 0.0 if k == "ema" else None) for k in CARD_FIELDS}
                       | {"layers": format_layers(NetSpec.from_dict(c["net"])) if "net" in c else None, "run": j["out"]}
                       for c, j in zip(cards, jobs)])
    atomic_write_bytes(out / "results.csv", df.to_csv(index=False).encode())
    fig = compression_figure(df)
    atomic_write_bytes(out / "compression.html", fig.to_html(include_plotlyjs=True, full_html=True).encode())
    return df


def _run_task(kind: str, what, preset: str, overrides: dict) -> list[dict]:
    return run_group(what, preset, overrides) if kind == "group" else [run_job(what, preset, overrides)]


def _run_ray(tasks, preset, overrides, address, num_cpus, gpus_per_task, device):
    """Each task (a run, or a group sharing a collection) as a Ray task of one CPU and, on a CUDA device, a GPU
    share: Ray gives each task its GPUs through CUDA_VISIBLE_DEVICES, so ``cuda`` in a task is one of them."""
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install -e .[ray] (or pip install 'ray>=2.30')") from None
    cuda = device.startswith("cuda")
    gpus = (1.0 if cuda else 0.0) if gpus_per_task is None else gpus_per_task
    if cuda and gpus <= 0:
        raise ValueError(f"--device {device} with --gpus-per-task {gpus}: Ray hides the GPUs from a task that asks "
                         "for none; give a share, e.g. --gpus-per-task 0.25 (four tasks per GPU), or --device cpu")
    started = not ray.is_initialized()
    if started:
        init_ray(address, num_cpus)
    try:
        remote = ray.remote(num_cpus=1, num_gpus=gpus)(_run_task)
        return ray.get([remote.remote(kind, what, preset, overrides) for kind, what, _ in tasks])
    finally:
        if started:
            ray.shutdown()


def init_ray(address: str | None = None, num_cpus: int | None = None, attempts: int = 4) -> None:
    """Join the Ray cluster at ``address``, or start a local one of ``num_cpus`` CPUs on 127.0.0.1 (its GPUs are
    the ones torch sees). On a loaded machine a local start can miss the fixed waits of Ray's own start-up (its
    raylet gives the node 30 s to register, its metrics agent 15 s: ray-project/ray#65983), so a start that times out
    is shut down and tried again, up to ``attempts`` times, with the GCS's request timeout raised to 120 s."""
    import os
    import time

    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
        return
    os.environ.setdefault("RAY_gcs_server_request_timeout_seconds", "120")
    import torch

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus or 2, num_gpus=torch.cuda.device_count(), include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1")
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises bare Exceptions for start-up time-outs
            ray.shutdown()
            if attempt == attempts or "timed out" not in str(exc):
                raise
            time.sleep(5 * attempt)


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """% of teacher as 'mean (std)' per student size (rows, by compression) and loss/schedule (columns)."""
    df = results.copy()
    df["method"] = [method_label(lo, be) for lo, be in zip(df["loss"], df.get("beta", ["1"] * len(df)))]
    g = df.groupby(["student_net", "compression", "method"])["pct_of_teacher"].agg(["mean", "std"]).reset_index()
    g["cell"] = [f"{m:.1f} ({0.0 if pd.isna(s) else s:.1f})" for m, s in zip(g["mean"], g["std"])]
    table = g.pivot(index=["student_net", "compression"], columns="method", values="cell")
    return table.sort_index(level="compression", ascending=False)
