"""The `workbench` command: doctor, train, evaluate, distill, distill-dataset, distill-dual, distill-realtime,
distill-multitask, sweep, import-teacher, reproduce, teachers, bench, report, demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ALGOS = ("dqn", "ppo")
DATA = Path(__file__).resolve().parent.parent / "data"
EMA_HELP = ("average the student's weights over its updates with this decay (0.999: about the last 1,000 updates); "
            "the averaged student is the one evaluated and saved, and the card adds the raw weights' scores")


def _threads(n: int | None) -> None:
    """Torch's CPU threads: ``--threads``, else WORKBENCH_THREADS, else every core this process may use. On a CPU
    shared with other work (a sweep, a notebook, a test worker beside) give fewer: a spare OpenMP thread spins
    against the other process and can slow both many times over."""
    from .hardware import set_threads

    set_threads(n)


def cmd_doctor(args) -> int:
    from .doctor import run_checks

    ok = True
    for name, good, detail in run_checks():
        ok &= good
        print(f"[{'ok' if good else 'MISSING'}] {name}: {detail}")
    print("all good" if ok else "some checks failed: see the fixes above")
    return 0 if ok else 1


def cmd_train(args) -> int:
    _threads(args.threads)
    from .agents.dqn import DQNConfig, dqn_config, train_dqn
    from .agents.ppo import PPOConfig, ppo_config, train_ppo
    from .config import flag, parse_overrides, values

    cls, make, train = {"ppo": (PPOConfig, ppo_config, train_ppo), "dqn": (DQNConfig, dqn_config, train_dqn)}[args.algo]
    other = DQNConfig if cls is PPOConfig else PPOConfig
    given = values(args, cls)
    foreign = sorted(set(values(args, other)) - set(given))
    if foreign:
        raise ValueError(f"{', '.join(flag(other, f) for f in foreign)}: not a setting of --algo {args.algo}; leave it "
                         f"out, or train with --algo {'dqn' if args.algo == 'ppo' else 'ppo'}")
    extra = parse_overrides(cls, args.set, fixed=("env_id", "preset"))
    twice = sorted(set(extra) & set(given))
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice, as a flag and with --set; give each once")
    given.update(extra)
    config = make(given.pop("preset", "demo"), given.pop("env_id"), **given)
    card = train(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    print(json.dumps({k: card[k] for k in ("env_id", "algo", "params", "env_steps", "wall_seconds",
                                            "return_mean", "return_std", "return_n")}))
    return 0


def cmd_evaluate(args) -> int:
    _threads(args.threads)
    from .evaluate import evaluate
    from .hardware import resolve_device
    from .runs import load_run_policy
    from .teachers import teacher_path

    if not 0.0 <= args.epsilon <= 1.0:
        raise ValueError(f"--epsilon {args.epsilon} is not a probability; give a value in [0, 1] (0.05: Nature DQN)")
    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: evaluate at least one episode (the cards use 30)")
    policy, env_id, settings = load_run_policy(teacher_path(args.run))
    policy.to(resolve_device(args.device))
    if args.env and env_id and args.env != env_id:
        raise ValueError(f"{args.run} is a policy for {env_id}, not {args.env}: its actions mean {env_id}'s buttons; "
                         "leave out --env to evaluate it on its own game")
    env_id = args.env or env_id
    if env_id is None:
        raise ValueError(f"nothing in {args.run} says which env it plays; give --env")
    result = evaluate(policy, env_id, args.episodes, args.seed, settings, epsilon=args.epsilon,
                      fire_after_life_loss=args.fire_after_life_loss)
    print(json.dumps({"run": str(args.run), "env_id": env_id, "params": policy.n_params, "seed": args.seed,
                      "epsilon": args.epsilon, "fire_after_life_loss": args.fire_after_life_loss,
                      **result.summary("return")}))
    return 0


def cmd_distill(args) -> int:
    _threads(args.threads)
    from .config import parse_overrides, values
    from .distill.loop import DistillConfig, distill, distill_config

    given = values(args, DistillConfig)
    if "student_width" in given and ("student_net" in given or "student_layers" in given):
        raise ValueError("give a student size either as --preset-net (with --layers for its shape), --layers or "
                         "--width, not --width with the others")
    # The student's size is settled from its own flags below: --set may not slip another size past that.
    extra = parse_overrides(DistillConfig, args.set, fixed=("teacher", "preset", "student_net", "student_width",
                                                          "student_layers", "student_family"))
    twice = sorted(set(extra) & set(given))
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice, as a flag and with --set; give each once")
    # A student sized by --width or --layers alone has no size preset; otherwise Rusu's net3 (4%) by default.
    student_net = given.pop("student_net", None if {"student_width", "student_layers"} & set(given) else "net3")
    teacher = given.pop("teacher", None)
    if teacher is None:  # a distilled set names its teacher
        if not given.get("from_dataset"):
            raise ValueError("--teacher is required: a teacher run folder or a shipped teacher's name "
                             "(`workbench teachers` lists them)")
        from .distill.dataset import load_set

        teacher = load_set(given["from_dataset"]).meta["teacher"]
    config = distill_config(given.pop("preset", "demo"), teacher, **given, **extra)
    config = dataclasses.replace(config, student_net=student_net)
    card = distill(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    print(json.dumps({k: card[k] for k in ("env_id", "loss", "tau", "beta", "teacher_params", "student_params",
                                            "compression", "return_mean", "teacher_return_mean", "pct_of_teacher",
                                            "pct_of_teacher_kind", "agreement", "kl", "teacher_queries",
                                            "wall_seconds")}))
    return 0


def cmd_distill_dual(args) -> int:
    _threads(args.threads)
    from .config import values
    from .distill.dual import DualConfig, distill_dual

    card = distill_dual(DualConfig(**values(args, DualConfig)), args.out, resume=args.resume,
                        progress_bar=not args.quiet)
    print(json.dumps({k: card[k] for k in ("env_id", "weighting", "every", "distill_steps", "a", "b", "best",
                                            "wall_seconds")}))
    return 0


def cmd_distill_dataset(args) -> int:
    _threads(args.threads)
    from .config import values
    from .distill.dataset import DatasetConfig, distill_dataset

    ds = distill_dataset(DatasetConfig(**values(args, DatasetConfig)), args.out, progress_bar=not args.quiet)
    print(json.dumps({"out": str(args.out), **{k: ds.meta[k] for k in ("teacher", "builder", "size", "seed",
                                                                        "teacher_queries", "build_seconds")}}))
    return 0


def cmd_import_teacher(args) -> int:
    _threads(args.threads)
    from .config import values
    from .imports import ImportConfig, import_teacher

    given = values(args, ImportConfig)
    config = ImportConfig(**given)
    card = import_teacher(config, args.out)
    lib = card.get("library_return") or {}
    print(json.dumps({**{k: card[k] for k in ("env_id", "algo", "kind", "params", "return_mean", "return_std",
                                              "return_n")},
                      "library_return_mean": lib.get("mean"), "library_return_why": lib.get("why"),
                      "origin": card["origin"].get("library"), "out": str(args.out)}))
    return 0


def cmd_distill_realtime(args) -> int:
    _threads(args.threads)
    from .config import values
    from .distill.realtime import RealtimeConfig, realtime_distill, speedup_table

    config = RealtimeConfig(**values(args, RealtimeConfig))
    card = realtime_distill(config, args.out, progress_bar=not args.quiet)
    print(speedup_table(card).to_string(index=False))
    print(json.dumps({"teacher_return": card["teacher"]["return_mean"], "teacher_seconds": card["teacher"]["teacher_seconds"],
                      "card": str(Path(args.out) / "card.json")}))
    return 0


def cmd_distill_multitask(args) -> int:
    _threads(args.threads)
    from .config import values
    from .distill.multitask import MultitaskConfig, distill_multitask, multitask_config, per_game_table, width_for_share

    given = values(args, MultitaskConfig)
    if args.student is not None:
        if "width" in given:
            raise ValueError("give --student (a share of the teachers' params) or --width, not both")
        given["width"] = width_for_share(given["teachers"], args.student, given.get("head_units", 128))
        print(f"--student {args.student}: trunk width {given['width']}")
    config = multitask_config(given.pop("preset", "demo"), given.pop("teachers"), **given)
    card = distill_multitask(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    print(per_game_table(card).to_string(index=False))
    print(json.dumps({k: card[k] for k in ("geomean_pct_of_teacher", "params", "teachers_params_sum", "compression",
                                            "wall_seconds")}))
    return 0


# DistillConfig fields that `workbench sweep` sets with flags of its own; --set takes the others.
SWEEP_FLAGS = ("teacher", "preset", "student_net", "student_layers", "loss", "beta", "seed", "total_steps", "tau", "ema",
               "device")


def cmd_sweep(args) -> int:
    _threads(args.threads)
    from .config import parse_overrides
    from .distill.loop import DistillConfig
    from .nets import parse_layers
    from .sweep import sweep

    overrides = {k: v for k, v in (("total_steps", args.total_steps), ("tau", args.tau), ("ema", args.ema),
                                   ("device", args.device)) if v is not None}
    overrides.update(parse_overrides(DistillConfig, args.set, fixed=SWEEP_FLAGS))
    layers = {}
    for item in args.layers or []:
        net, sep, shape = item.partition("=")
        if not sep:
            raise ValueError(f"--layers {item!r}: give each as NET=CONV:HIDDEN, e.g. tiny=8:16 net3=12:24")
        parse_layers(shape)
        layers[net.strip()] = shape.strip()
    df = sweep(args.teacher, args.nets, args.losses, args.seeds, args.out, args.preset, args.engine, args.address,
               args.num_cpus, overrides, args.betas, layers=layers, share_data=not args.independent,
               gpus_per_task=args.gpus_per_task)
    print(df.groupby(["student_net", "loss", "beta"])[["compression", "pct_of_teacher", "agreement"]].agg(["mean", "std"])
          .round(3).to_string())
    print(f"wrote {Path(args.out) / 'results.csv'} and {Path(args.out) / 'compression.html'}")
    return 0


def cmd_reproduce(args) -> int:
    _threads(args.threads)
    from .reproduce import load_config, reproduce
    from .results import commit_results, wide

    if args.commit and (args.preset != "demo" or args.estimate):
        print(f"--commit: the committed table is the demo preset's; run a {args.preset} sweep without --commit",
              file=sys.stderr)
        return 2
    config = load_config(args.config, teachers=args.teachers, nets=args.nets, losses=args.losses, seeds=args.seeds)
    if not args.estimate and not args.out:
        print("workbench reproduce: error: --out is required (the sweep's folder), unless --estimate", file=sys.stderr)
        return 2
    if args.estimate:
        from .reproduce import estimate

        df = estimate(config, args.preset)
        print(df.to_string(index=False))
        per_teacher = df.groupby("teacher")["sweep_hours"].sum().round(1)
        print(f"\n{args.preset} preset on this machine, one run at a time ({len(config['losses'])} losses x "
              f"{len(config['seeds'])} seeds per row; evaluations not counted):")
        print(per_teacher.to_string())
        print(f"all: {per_teacher.sum():.1f} hours")
        return 0
    results, table = reproduce(config, args.out, args.preset, args.engine, address=args.address, num_cpus=args.num_cpus,
                               finished_only=args.finished_only, device=args.device,
                               share_data=not args.independent, gpus_per_task=args.gpus_per_task)
    if args.commit:
        _, table = commit_results(results, args.commit, threads=args.threads or 1)
        print(f"merged {len(results)} runs into {args.commit}; the table below is the merged one")
    for loss in config["losses"]:
        print(f"\n% of teacher, {loss} (mean over seeds; geometric mean over games):")
        print(wide(table, loss).round(1).to_string())
    print(f"\nwrote {Path(args.out) / 'rusu_table.csv'}, results.csv and compression.html"
          + (f"; {Path(args.commit).parent / 'rusu_table.csv'}" if args.commit else ""))
    return 0


def cmd_teachers(args) -> int:
    from .teachers import list_in_training, list_teachers

    df = list_teachers()
    if args.json:
        print(df.to_json(orient="records"))
        return 0
    print(df.to_string(index=False, na_rep="-") if len(df) else "no shipped teachers found in data/teachers")
    training = list_in_training()
    if len(training):
        print("\nstill training (not teachers yet; data/in_training/README.md says how to continue them):")
        print(training.to_string(index=False, na_rep="-"))
    return 0


def cmd_bench(args) -> int:
    _threads(args.threads)
    from .bench import run_bench

    save = None
    if args.out:
        from .runs import atomic_write_json

        out = Path(args.out)
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file for the figures, e.g. --out {out / 'bench.json'}")
        out.parent.mkdir(parents=True, exist_ok=True)
        save = lambda figures: atomic_write_json(out, figures)  # noqa: E731
    print(json.dumps(run_bench(quick=args.quick, device=args.device, on_section=save), indent=2))
    return 0


def cmd_demo(args) -> int:
    _threads(args.threads)
    from .teachers import demo

    return demo(args.out)


def cmd_report(args) -> int:
    from .report import parse_value, report

    params = {}
    for item in args.param or []:
        key, value = item
        params[key] = parse_value(value)
    out = Path(args.out or f"reports/{Path(args.notebook).stem}.html")
    path = report(args.notebook, out, params, progress=not args.quiet)
    print(f"report: {path.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .agents.dqn import DQNConfig
    from .agents.ppo import PPOConfig
    from .config import add_arguments
    from .distill.dataset import DatasetConfig
    from .distill.dual import DualConfig
    from .distill.loop import DistillConfig
    from .distill.multitask import MultitaskConfig
    from .distill.realtime import RealtimeConfig
    from .imports import ImportConfig

    p = argparse.ArgumentParser(prog="workbench", description="Policy distillation workbench")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: WORKBENCH_THREADS, else every core available; a sweep's runs "
                        "take one each)")
    p.add_argument("--env-threads", type=_at_least_one, default=None, metavar="N",
                   help="Atari env threads, and the most worker processes MinAtar and classic-control envs step in "
                        "(64+ envs each); sets WORKBENCH_ENV_THREADS for the command (default: Atari every core "
                        "available, MinAtar one process)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("doctor", help="check the installation and say how to fix what is missing")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("train", help="train a teacher (DQN or PPO)",
                       description="Every field of the algorithm's config is a flag; the preset (and the env family) "
                                   "set the defaults of those not given.")
    s.add_argument("--algo", choices=ALGOS, default="ppo")
    ppo_fields = {f.name for f in dataclasses.fields(PPOConfig)}
    dqn_fields = {f.name for f in dataclasses.fields(DQNConfig)}
    add_arguments(s.add_argument_group("PPO and DQN"), PPOConfig, skip=tuple(ppo_fields - dqn_fields),
                  required=("env_id",), show_defaults=False)
    add_arguments(s.add_argument_group("PPO only"), PPOConfig, skip=tuple(dqn_fields))
    add_arguments(s.add_argument_group("DQN only"), DQNConfig, skip=tuple(ppo_fields))
    s.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="set a field of the algorithm's config by name, e.g. --set anneal_lr=false (repeatable; the "
                        "run's config.json records it)")
    _run_flags(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a run's policy on fixed seeds")
    s.add_argument("run", help="run folder (or model.safetensors)")
    s.add_argument("--episodes", type=int, default=30)
    s.add_argument("--seed", type=int, default=10_000)
    s.add_argument("--env", default=None, help="env id (default: the run's)")
    s.add_argument("--epsilon", type=float, default=0.0,
                   help="take a uniformly random action with this probability (Nature DQN's protocol: 0.05; "
                        "default 0, greedy, as every card here)")
    _device_flag(s)
    s.add_argument("--fire-after-life-loss", action="store_true",
                   help="press FIRE for the policy after each lost life (Atari): how it plays apart from relaunching "
                        "the ball, which a student that copied a stochastic teacher may never do greedily")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("distill", help="distil a teacher into a smaller student")
    add_arguments(s, DistillConfig, help_extra={"teacher": "Required, but for --from-dataset (the set's teacher)."})
    s.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="set a field of the distillation config by name, e.g. --set lr=3e-4 (repeatable; the run's "
                        "config.json records it)")
    _run_flags(s)
    s.set_defaults(func=cmd_distill)

    s = sub.add_parser("distill-dual", help="two PPO learners that teach each other where the other is better "
                       "(dual policy distillation; no pre-trained teacher)")
    add_arguments(s, DualConfig, required=("env_id",))
    _run_flags(s)
    s.set_defaults(func=cmd_distill_dual)

    s = sub.add_parser("distill-dataset", help="a handful of states with the teacher's outputs (a distilled set), "
                       "from which `distill --from-dataset` trains a student in seconds")
    add_arguments(s, DatasetConfig, required=("teacher",))
    s.add_argument("--out", required=True, help="the set to write: a new .safetensors file")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_distill_dataset)

    s = sub.add_parser("import-teacher", help="a teacher from Stable-Baselines3 (.zip) or cleanrl (.cleanrl_model), "
                       "read without unpickling, as a teacher run folder")
    s.add_argument("--from", dest="origin", required=True, choices=("sb3", "cleanrl"),
                   help="the library that saved it (a torch module in Python: workbench.imports.import_module)")
    s.add_argument("path", help="the model file: an SB3 model.save() zip, or a cleanrl .cleanrl_model state dict")
    add_arguments(s, ImportConfig, skip=("origin", "path"), required=("env_id",))
    s.add_argument("--out", required=True, help="teacher run folder to write (a new or empty one)")
    s.set_defaults(func=cmd_import_teacher)

    s = sub.add_parser("distill-realtime", help="train a teacher while students distil from it (Sun & Fazli), "
                       "timed against train-then-distill")
    add_arguments(s, RealtimeConfig, required=("env_id",))
    s.add_argument("--out", required=True, help="run folder to write (a new or empty one)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_distill_realtime)

    s = sub.add_parser("distill-multitask", help="one student for several games, a head per game (Rusu's Multi-Dist)")
    add_arguments(s, MultitaskConfig, required=("teachers",))
    s.add_argument("--student", type=float, default=None, metavar="SHARE",
                   help="student size as a share of the teachers' summed params, e.g. 0.25 (picks the trunk width)")
    _run_flags(s)
    s.set_defaults(func=cmd_distill_multitask)

    s = sub.add_parser("sweep", help="students of several sizes x losses x seeds; results.csv + compression.html")
    s.add_argument("--teacher", nargs="+", required=True, help="one or more teacher run folders / names")
    s.add_argument("--nets", nargs="+", default=["net1", "net2", "net3", "tiny"])
    s.add_argument("--losses", nargs="+", default=["nll", "mse", "kl"], choices=("nll", "mse", "kl"))
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    s.add_argument("--betas", nargs="+", default=["1"],
                   help="collection schedules: 1 teacher-driven, 0 student-driven, linear:1:0 DAgger-style")
    s.add_argument("--preset", choices=("smoke", "demo", "full"), default="demo")
    s.add_argument("--total-steps", type=int, default=None)
    s.add_argument("--tau", type=float, default=None,
                   help="KL temperature on the teacher (default: by the teacher, 1 for a PPO policy's logits, 0.01 "
                        "for DQN Q-values)")
    s.add_argument("--ema", type=float, default=None, help=EMA_HELP)
    s.add_argument("--layers", nargs="+", default=None, metavar="NET=CONV:HIDDEN",
                   help="a size preset's own shape at its size, e.g. tiny=8:16 net3=12:24 (within 15%% of its "
                        "parameters); the run folders say it: tiny@8x16-kl-s0")
    s.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override another field of every run's distillation config, e.g. --set lr=3e-4 "
                        "(repeatable; each run's config.json records it)")
    s.add_argument("--engine", choices=("local", "ray"), default="local")
    s.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    s.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance")
    _sharing_flags(s)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("reproduce", help="Rusu et al.'s compression table on the shipped teachers (a resumable sweep)")
    s.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "data" / "results" / "rusu_sweep.json"),
                   help="sweep config (default: data/results/rusu_sweep.json)")
    s.add_argument("--preset", choices=("smoke", "demo", "full"), default="demo")
    s.add_argument("--teachers", nargs="+", default=None, help="override the config's teachers")
    s.add_argument("--nets", nargs="+", default=None)
    s.add_argument("--losses", nargs="+", default=None, choices=("nll", "mse", "kl"))
    s.add_argument("--seeds", nargs="+", type=int, default=None)
    s.add_argument("--engine", choices=("local", "ray"), default="local")
    s.add_argument("--address", default=None)
    s.add_argument("--num-cpus", type=int, default=None)
    _sharing_flags(s)
    s.add_argument("--out", default=None, help="sweep folder (required unless --estimate)")
    s.add_argument("--estimate", action="store_true",
                   help="run nothing: time a few collection steps and updates per teacher and student size and print "
                        "how long each run and the whole sweep would take at --preset on this machine")
    s.add_argument("--finished-only", action="store_true",
                   help="run nothing: build the table from the runs in --out that have finished (a sweep still going)")
    s.add_argument("--commit", nargs="?", const=str(Path(__file__).resolve().parent.parent / "data" / "results"
                                                     / "rusu_results.csv"), default=None, metavar="RESULTS_CSV",
                   help="merge the runs into the committed results (default data/results/rusu_results.csv) and "
                        "rewrite rusu_table.csv beside it")
    s.set_defaults(func=cmd_reproduce)

    s = sub.add_parser("teachers", help="list the shipped teachers")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_teachers)

    s = sub.add_parser("bench", help="speed and memory ratios, each against a baseline measured in the same run")
    s.add_argument("--quick", action="store_true", help="smaller measurements (for CI)")
    s.add_argument("--out", default=None, metavar="FILE",
                   help="also write the figures to FILE (JSON), after each section: a bench cut short keeps them")
    _device_flag(s)
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("report", help="run a notebook headless (papermill) and write a standalone HTML report")
    s.add_argument("notebook", help="e.g. notebooks/00_tour.ipynb")
    s.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="set a notebook parameter (repeatable); VALUE is parsed as a Python literal where it is one")
    s.add_argument("--out", default=None, help="the HTML file (default reports/<notebook>.html)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("demo", help="the main job: the tour notebook on the shipped default, as an HTML report")
    s.add_argument("--out", default="reports/tour.html")
    s.set_defaults(func=cmd_demo)
    return p


def _device_flag(s: argparse.ArgumentParser) -> None:
    from .config import OnDevice, field_docs

    s.add_argument("--device", default="auto", help=field_docs(OnDevice)["device"])


def _sharing_flags(s: argparse.ArgumentParser) -> None:
    """A sweep's device, how its runs get their data, and the GPU share of each Ray task."""
    _device_flag(s)
    s.add_argument("--independent", action="store_true",
                   help="give every run its own collection (default: teacher-driven runs of one teacher learn from "
                        "one collection, labelled once)")
    s.add_argument("--gpus-per-task", type=float, default=None,
                   help="GPU share each Ray task asks for (default: 1 with --device cuda, none on a CPU); 0.25 puts "
                        "four tasks on a GPU")


def _run_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", required=True, help="run folder to write (a new or empty one, or one to --resume)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out (refused if it was made with another recipe)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _at_least_one(raw: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number; give a count, e.g. --env-threads 4") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: give at least 1 (1 steps MinAtar envs in this process)")
    return n


def main(argv: list[str] | None = None) -> int:
    from .hardware import env_threads_asked

    args = build_parser().parse_args(argv)
    try:
        with env_threads_asked(args.env_threads):
            return args.func(args)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only folder, permission: what failed, where, and the last good state
        where = f" {exc.filename}" if exc.filename else ""
        print(f"workbench {args.command}: error: cannot write or read{where}: {exc.strerror or exc}; free space, or "
              "choose a writable --out (a run's last checkpoint is left as it was: --resume continues it)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
