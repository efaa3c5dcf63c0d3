"""The `workbench` command: doctor, train, evaluate, distill, distill-realtime, distill-multitask, sweep,
reproduce, teachers, bench, report, demo."""

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
    """One torch thread unless asked: the workbench's nets are small, and on a shared CPU (a sweep or a notebook
    running beside) a second OpenMP thread spins against the other process and can slow a run many times over."""
    import torch

    torch.set_num_threads(n or 1)


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
    from .agents.common import parse_overrides

    overrides = {"total_steps": args.total_steps, "n_envs": args.n_envs, "width": args.width}
    if args.algo == "ppo":
        from .agents.ppo import PPOConfig, ppo_config, train_ppo

        overrides.update(parse_overrides(PPOConfig, args.set))
        config = ppo_config(args.preset, args.env, seed=args.seed, **overrides)
        card = train_ppo(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    else:
        from .agents.dqn import DQNConfig, dqn_config, train_dqn

        overrides.update(parse_overrides(DQNConfig, args.set))
        config = dqn_config(args.preset, args.env, seed=args.seed, **overrides)
        card = train_dqn(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    print(json.dumps({k: card[k] for k in ("env_id", "algo", "params", "env_steps", "wall_seconds",
                                            "return_mean", "return_std", "return_n")}))
    return 0


def cmd_evaluate(args) -> int:
    _threads(args.threads)
    from .evaluate import evaluate
    from .runs import Run, load_policy

    if not 0.0 <= args.epsilon <= 1.0:
        raise ValueError(f"--epsilon {args.epsilon} is not a probability; give a value in [0, 1] (0.05: Nature DQN)")
    policy = load_policy(args.run)
    run = Run(args.run)
    settings = run.config.get("env_spec", {}).get("settings", {}) if run.file("config.json").exists() else {}
    env_id = args.env or run.card["env_id"]
    result = evaluate(policy, env_id, args.episodes, args.seed, settings, epsilon=args.epsilon,
                      fire_after_life_loss=args.fire_after_life_loss)
    print(json.dumps({"run": str(args.run), "env_id": env_id, "params": policy.n_params, "seed": args.seed,
                      "epsilon": args.epsilon, "fire_after_life_loss": args.fire_after_life_loss,
                      **result.summary("return")}))
    return 0


# DistillConfig fields that `workbench distill` sets with flags of their own; --set takes the others.
DISTILL_FLAGS = ("teacher", "preset", "student_net", "student_width", "student_family", "student_layers", "loss",
                 "tau", "beta", "seed", "total_steps", "ema")


def cmd_distill(args) -> int:
    _threads(args.threads)
    from .agents.common import parse_overrides
    from .distill.loop import DistillConfig, distill, distill_config

    if args.width is not None and (args.preset_net or args.layers):
        raise ValueError("give a student size either as --preset-net (with --layers for its shape), --layers or "
                         "--width, not --width with the others")
    extra = parse_overrides(DistillConfig, args.set, fixed=DISTILL_FLAGS)
    student_net = args.preset_net if args.width is not None or args.layers else (args.preset_net or "net3")
    config = distill_config(
        args.preset, args.teacher, student_layers=args.layers, student_width=args.width, student_family=args.student,
        loss=args.loss, tau=args.tau, beta=args.beta, seed=args.seed, total_steps=args.total_steps, ema=args.ema,
        **extra)
    # set after distill_config, which drops None overrides: a student sized by --width or --layers alone has no preset
    config = dataclasses.replace(config, student_net=student_net)
    card = distill(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    print(json.dumps({k: card[k] for k in ("env_id", "loss", "tau", "beta", "teacher_params", "student_params",
                                            "compression", "return_mean", "teacher_return_mean", "pct_of_teacher",
                                            "agreement", "kl", "teacher_queries", "wall_seconds")}))
    return 0


def cmd_distill_realtime(args) -> int:
    _threads(args.threads)
    from .distill.realtime import RealtimeConfig, realtime_distill, speedup_table

    overrides = {k: v for k, v in dict(
        teacher_steps=args.teacher_steps, updates_per_state=args.updates_per_state, distill_steps=args.distill_steps,
        eval_points=args.eval_points, eval_episodes=args.eval_episodes,
        final_eval_episodes=args.final_eval_episodes).items() if v is not None}
    config = RealtimeConfig(env_id=args.env, algo=args.algo, preset=args.preset, students=tuple(args.student),
                            loss=args.loss, tau=args.tau, recompute=args.recompute, sequential=not args.no_sequential,
                            distill_preset=args.distill_preset or args.preset, seed=args.seed, **overrides)
    card = realtime_distill(config, args.out, progress_bar=not args.quiet)
    print(speedup_table(card).to_string(index=False))
    print(json.dumps({"teacher_return": card["teacher"]["return_mean"], "teacher_seconds": card["teacher"]["teacher_seconds"],
                      "card": str(Path(args.out) / "card.json")}))
    return 0


def cmd_distill_multitask(args) -> int:
    _threads(args.threads)
    from .distill.multitask import distill_multitask, multitask_config, per_game_table, width_for_share

    if args.student is not None:
        if args.width is not None:
            print("give --student (a share of the teachers' params) or --width, not both", file=sys.stderr)
            return 2
        args.width = width_for_share(args.teachers, args.student, args.head_units or 128)
        print(f"--student {args.student}: trunk width {args.width}")
    config = multitask_config(args.preset, args.teachers, width=args.width, head_units=args.head_units, loss=args.loss,
                              tau=args.tau, seed=args.seed, steps_per_game=args.steps_per_game,
                              memory_per_game=args.memory_per_game, updates_per_step=args.updates_per_step)
    card = distill_multitask(config, args.out, resume=args.resume, progress_bar=not args.quiet)
    print(per_game_table(card).to_string(index=False))
    print(json.dumps({k: card[k] for k in ("geomean_pct_of_teacher", "params", "teachers_params_sum", "compression",
                                            "wall_seconds")}))
    return 0


def cmd_sweep(args) -> int:
    _threads(args.threads)
    from .agents.common import parse_overrides
    from .distill.loop import DistillConfig
    from .nets import parse_layers
    from .sweep import sweep

    overrides = {k: v for k, v in (("total_steps", args.total_steps), ("tau", args.tau), ("ema", args.ema))
                 if v is not None}
    overrides.update(parse_overrides(DistillConfig, args.set, fixed=DISTILL_FLAGS))
    layers = {}
    for item in args.layers or []:
        net, sep, shape = item.partition("=")
        if not sep:
            raise ValueError(f"--layers {item!r}: give each as NET=CONV:HIDDEN, e.g. tiny=8:16 net3=12:24")
        parse_layers(shape)
        layers[net.strip()] = shape.strip()
    df = sweep(args.teacher, args.nets, args.losses, args.seeds, args.out, args.preset, args.engine, args.address,
               args.num_cpus, overrides, args.betas, layers=layers)
    print(df.groupby(["student_net", "loss", "beta"])[["compression", "pct_of_teacher", "agreement"]].agg(["mean", "std"])
          .round(3).to_string())
    print(f"wrote {Path(args.out) / 'results.csv'} and {Path(args.out) / 'compression.html'}")
    return 0


def cmd_reproduce(args) -> int:
    _threads(args.threads)
    from .reproduce import commit_results, load_config, reproduce, wide

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
                               finished_only=args.finished_only)
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

    print(json.dumps(run_bench(quick=args.quick), indent=2))
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
    p = argparse.ArgumentParser(prog="workbench", description="Policy distillation workbench")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1; small nets gain little from more)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("doctor", help="check the installation and say how to fix what is missing")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("train", help="train a teacher (DQN or PPO)")
    s.add_argument("--env", required=True, help="ALE/<Game>-v5, MinAtar/<Game>-v1, CartPole-v1, Acrobot-v1")
    s.add_argument("--algo", choices=ALGOS, default="ppo")
    s.add_argument("--preset", choices=("smoke", "demo", "full"), default="demo")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="run folder to write")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    s.add_argument("--total-steps", type=int, default=None, help="override the preset's env steps")
    s.add_argument("--n-envs", type=int, default=None)
    s.add_argument("--width", type=float, default=None, help="width multiplier of the network family")
    s.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override any field of the algorithm's config, e.g. --set lr=1e-3 --set anneal_lr=false "
                        "(repeatable; the run's config.json records it)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a run's policy on fixed seeds")
    s.add_argument("run", help="run folder (or model.safetensors)")
    s.add_argument("--episodes", type=int, default=30)
    s.add_argument("--seed", type=int, default=10_000)
    s.add_argument("--env", default=None, help="env id (default: the run's)")
    s.add_argument("--epsilon", type=float, default=0.0,
                   help="take a uniformly random action with this probability (Nature DQN's protocol: 0.05; "
                        "default 0, greedy, as every card here)")
    s.add_argument("--fire-after-life-loss", action="store_true",
                   help="press FIRE for the policy after each lost life (Atari): how it plays apart from relaunching "
                        "the ball, which a student that copied a stochastic teacher may never do greedily")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("distill", help="distil a teacher into a smaller student")
    s.add_argument("--teacher", required=True, help="teacher run folder or shipped teacher name")
    s.add_argument("--student", default=None, choices=("nature_cnn", "minatar_cnn", "mlp"),
                   help="student network family (default: the teacher's)")
    s.add_argument("--preset-net", default=None, choices=("teacher", "net1", "net2", "net3", "tiny"),
                   help="student size as Rusu's share of the teacher (default net3, 4%%)")
    s.add_argument("--width", type=float, default=None, help="student width multiplier instead of --preset-net")
    s.add_argument("--layers", default=None, metavar="CONV:HIDDEN",
                   help="the student's own layer widths, e.g. 8:16 (one 8-channel conv, 16 hidden units) or 8,8:26; "
                        "with --preset-net they must come within 15%% of its parameters: another shape, same size")
    s.add_argument("--loss", choices=("nll", "mse", "kl"), default="kl")
    s.add_argument("--tau", type=float, default=0.01,
                   help="KL temperature on the teacher (Rusu: 0.01, for DQN Q-values; a PPO teacher's logits are "
                        "its policy, and tau 1 copies a stochastic one better: data/results/asterix_tau_probe.csv)")
    s.add_argument("--beta", default="1", help="share of steps the teacher acts: 1, 0, 0.5 or linear:1:0")
    s.add_argument("--ema", type=float, default=None, help=EMA_HELP)
    s.add_argument("--preset", choices=("smoke", "demo", "full"), default="demo")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--total-steps", type=int, default=None)
    s.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override another field of the distillation config, e.g. --set lr=3e-4 --set "
                        "updates_per_step=1 --set memory_size=200000 (repeatable; the run's config.json records it)")
    s.add_argument("--out", required=True)
    s.add_argument("--resume", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_distill)

    s = sub.add_parser("distill-realtime", help="train a teacher while students distil from it (Sun & Fazli), "
                       "timed against train-then-distill")
    s.add_argument("--env", required=True, help="ALE/<Game>-v5, MinAtar/<Game>-v1, CartPole-v1, Acrobot-v1")
    s.add_argument("--algo", choices=ALGOS, default="ppo", help="the teacher's algorithm")
    s.add_argument("--student", nargs="+", default=["net3", "tiny"], choices=("net1", "net2", "net3", "tiny"),
                   help="student sizes, all in the same run (default: net3 = 4%%, tiny = 1.7%%)")
    s.add_argument("--preset", choices=("smoke", "demo", "full"), default="demo", help="the teacher's preset")
    s.add_argument("--distill-preset", choices=("smoke", "demo", "full"), default=None,
                   help="preset of the sequential baseline's distillation (default: --preset)")
    s.add_argument("--teacher-steps", type=int, default=None, help="override the teacher's env steps")
    s.add_argument("--distill-steps", type=int, default=None, help="override the baseline's env steps")
    s.add_argument("--loss", choices=("nll", "mse", "kl"), default="kl")
    s.add_argument("--tau", type=float, default=0.01)
    s.add_argument("--updates-per-state", type=float, default=None,
                   help="student updates per state the teacher collects (default 1/128: replay ratio 2 at batch 256)")
    s.add_argument("--recompute", action="store_true", help="relabel every student minibatch with the latest teacher")
    s.add_argument("--no-sequential", action="store_true", help="skip the train-then-distill baseline")
    s.add_argument("--eval-points", type=int, default=None)
    s.add_argument("--eval-episodes", type=int, default=None)
    s.add_argument("--final-eval-episodes", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_distill_realtime)

    s = sub.add_parser("distill-multitask", help="one student for several games, a head per game (Rusu's Multi-Dist)")
    s.add_argument("--teachers", nargs="+", required=True, help="teacher run folders / shipped names, one per game")
    s.add_argument("--student", type=float, default=None, metavar="SHARE",
                   help="student size as a share of the teachers' summed params, e.g. 0.25 (picks the trunk width)")
    s.add_argument("--width", type=float, default=None, help="shared trunk width (x the family's base net; default 1)")
    s.add_argument("--head-units", type=int, default=None, help="hidden units of each game's head (Rusu: 128)")
    s.add_argument("--loss", choices=("nll", "mse", "kl"), default="kl")
    s.add_argument("--tau", type=float, default=0.01)
    s.add_argument("--preset", choices=("smoke", "demo", "full"), default="demo")
    s.add_argument("--steps-per-game", type=int, default=None, help="override the preset's env steps per game")
    s.add_argument("--memory-per-game", type=int, default=None, help="override the preset's replay memory per game")
    s.add_argument("--updates-per-step", type=float, default=None,
                   help="override the preset's updates per vector step, per game")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--resume", action="store_true")
    s.add_argument("--quiet", action="store_true")
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
                   help="KL temperature on the teacher (default 0.01, Rusu's; ~1 for PPO teachers)")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
