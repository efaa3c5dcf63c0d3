"""The Rusu table: config, sweep-backed reproduction (resumable), and the table's arithmetic."""

import math
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.reproduce import CONFIG, load_config, reproduce
from workbench.results import RESULTS, RUSU_GEOMEAN, commit_results, rusu_table, wide
from workbench.teachers import TEACHERS_DIR


def test_config_covers_every_shipped_teacher_and_rusus_sizes():
    config = load_config()
    assert config["teachers"] == sorted(p.parent.name for p in TEACHERS_DIR.glob("*/card.json"))
    assert config["nets"] == ["net1", "net2", "net3", "tiny"] and config["losses"] == ["nll", "mse", "kl"]
    assert config["tau"] == 0.01 and config["seeds"] == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown losses"):
        load_config(losses=["hinge"])


def test_table_geometric_means_are_over_games_and_carry_rusus_figures():
    table = rusu_table(pd.read_csv(RESULTS, dtype={"beta": str}))
    games = table[table["game"] != "geometric mean"]
    for (net, loss), rows in games.groupby(["student_net", "loss"]):
        geo = table[(table["game"] == "geometric mean") & (table["student_net"] == net) & (table["loss"] == loss)]
        pcts = [max(v, 1.0) for v in rows["pct_mean"]]
        expected = math.exp(sum(math.log(v) for v in pcts) / len(pcts))
        # the table rounds each game and the mean to 0.1: a game's rounding moves log(geomean) by <= 0.05 / v / n
        slack = 0.05 + expected * sum(0.05 / v for v in pcts) / len(pcts)
        assert geo["pct_mean"].iloc[0] == pytest.approx(expected, abs=slack)
        assert geo["games"].iloc[0] == len(rows)
        want, got = (RUSU_GEOMEAN.get(net) if loss == "kl" else None), geo["rusu_dist_kl"].iloc[0]
        assert (want is None and pd.isna(got)) or got == want
    w = wide(table, "kl")
    assert list(w.loc["Rusu et al. 2016 (Atari, Dist-KL)"][["net1", "net2", "net3"]]) == [108.3, 101.7, 83.9]
    assert {"machine", "runs_wall_seconds", "preset"} <= set(table.columns)


def test_heatmap_shows_the_table_per_loss_with_rusus_row_in_the_kl_panel():
    from workbench.plots import rusu_heatmap

    table = rusu_table(pd.read_csv(RESULTS, dtype={"beta": str}))
    fig = rusu_heatmap(table)
    assert [t.name for t in fig.data] == [None] * 3 and [a.text for a in fig.layout.annotations] == ["KL", "NLL", "MSE"]
    for trace, loss in zip(fig.data, ("kl", "nll", "mse")):
        w = wide(table, loss)
        assert list(trace.y) == list(w.index) and trace.zmid == 100
        assert [[None if pd.isna(v) else v for v in row] for row in trace.z] == \
            [[None if pd.isna(v) else v for v in row] for row in w.values]
    assert fig.data[0].y[-1].startswith("Rusu") and list(fig.data[0].z[-1][:3]) == [108.3, 101.7, 83.9]
    assert not any(str(y).startswith("Rusu") for y in fig.data[1].y)


def test_committed_table_matches_the_committed_runs():
    committed = pd.read_csv(Path(CONFIG).parent / "rusu_table.csv")
    again = rusu_table(pd.read_csv(RESULTS, dtype={"beta": str}))
    cols = ["game", "student_net", "loss", "pct_mean"]
    assert committed[cols].equals(again[cols])


def test_reproduce_writes_the_table_and_resumes(tmp_path):
    config = load_config(teachers=["cartpole"], nets=["tiny"], losses=["kl"], seeds=[0])
    results, table = reproduce(config, tmp_path, "smoke")
    assert (tmp_path / "rusu_table.csv").exists() and len(results) == 1
    card = tmp_path / "cartpole" / "tiny-kl-s0" / "card.json"
    stamp = card.stat().st_mtime_ns
    assert main(["reproduce", "--preset", "smoke", "--teachers", "cartpole", "--nets", "tiny", "--losses", "kl",
                 "--seeds", "0", "--out", str(tmp_path)]) == 0
    assert card.stat().st_mtime_ns == stamp  # the finished run was skipped, not redone
    # --finished-only tables what has finished and runs nothing else (a sweep still going, or cut off).
    assert main(["reproduce", "--preset", "smoke", "--teachers", "cartpole", "--nets", "tiny", "net3", "--losses",
                 "kl", "--seeds", "0", "--out", str(tmp_path), "--finished-only"]) == 0
    assert not (tmp_path / "cartpole" / "net3-kl-s0").exists()
    assert pd.read_csv(tmp_path / "results.csv")["student_net"].tolist() == ["tiny"]
    # Only demo runs go into the committed table; a smoke sweep with --commit is refused before it runs.
    assert main(["reproduce", "--preset", "smoke", "--teachers", "cartpole", "--nets", "net1", "--losses", "kl",
                 "--seeds", "0", "--out", str(tmp_path), "--commit", str(tmp_path / "r.csv")]) == 2
    assert not (tmp_path / "cartpole" / "net1-kl-s0").exists() and not (tmp_path / "r.csv").exists()


def test_commit_results_replaces_the_same_run_keeps_the_rest_and_rewrites_the_table(tmp_path):
    into = tmp_path / "rusu_results.csv"
    into.write_text(RESULTS.read_text())
    old = pd.read_csv(into, dtype={"beta": str})
    redo = old[(old["teacher"] == "cartpole") & (old["student_net"] == "tiny") & (old["loss"] == "kl")].head(1).copy()
    redo["pct_of_teacher"], redo["run"] = 50.0, "runs/x/tiny-kl-s0"
    extra = redo.assign(seed=7, pct_of_teacher=60.0)
    redo["ema"] = extra["ema"] = 0.0  # as a sweep writes them now
    results, table = commit_results(pd.concat([redo, extra]), into)
    assert len(results) == len(old) + 1 and "run" not in results.columns
    assert results["ema"].eq(0.0).all(), "the committed rows, written before sweeps had an ema column, ran without it"
    again = pd.read_csv(into, dtype={"beta": str})
    mine = again[(again["teacher"] == "cartpole") & (again["student_net"] == "tiny") & (again["loss"] == "kl")]
    before = old[(old["teacher"] == "cartpole") & (old["student_net"] == "tiny") & (old["loss"] == "kl")]
    by_seed = mine.set_index("seed")["pct_of_teacher"]
    assert sorted(by_seed.index) == [0, 1, 2, 7] and by_seed[0] == 50.0 and by_seed[7] == 60.0
    assert list(by_seed[[1, 2]]) == list(before.set_index("seed")["pct_of_teacher"][[1, 2]])
    assert mine.set_index("seed").loc[7, "machine"].endswith("1 thread per run")
    written = pd.read_csv(tmp_path / "rusu_table.csv")
    row = written[(written["game"] == "CartPole-v1") & (written["student_net"] == "tiny") & (written["loss"] == "kl")]
    assert row["pct_mean"].iloc[0] == pytest.approx(mine["pct_of_teacher"].mean(), abs=0.06)


def test_estimate_times_the_pieces_and_scales_them_to_the_preset(capsys):
    from workbench.reproduce import estimate

    config = load_config(teachers=["cartpole"], nets=["net1", "tiny"], losses=["kl", "mse"], seeds=[0, 1, 2])
    df = estimate(config, "full", probe_steps=20, probe_updates=5)
    assert list(df["student_net"]) == ["net1", "tiny"] and (df["collect_ms"] > 0).all() and (df["update_ms"] > 0).all()
    row = df.iloc[0]
    assert row["env_steps"] == 10_000_000 and row["batch_size"] == 32 and row["updates"] == 2_487_500  # (10M-50k)/8*2
    assert row["run_seconds"] == pytest.approx(10_000_000 / 8 * row["collect_ms"] / 1e3
                                               + row["updates"] * row["update_ms"] / 1e3, rel=0.01)
    assert row["sweep_hours"] == pytest.approx(6 * row["run_seconds"] / 3600, abs=0.01)  # 2 losses x 3 seeds
    assert main(["reproduce", "--preset", "smoke", "--teachers", "cartpole", "--nets", "tiny", "--estimate"]) == 0
    assert "all:" in capsys.readouterr().out
    assert main(["reproduce", "--preset", "demo", "--teachers", "cartpole"]) == 2  # a sweep needs its --out


def test_breakout_probe_script_refuses_a_run_that_is_not_a_breakout_student_and_keeps_the_csv():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    csv = root / "data" / "results" / "breakout_fire_probe.csv"
    before = csv.read_bytes()
    done = subprocess.run([sys.executable, str(root / "scripts" / "breakout_probe_row.py"),
                           str(root / "data" / "teachers" / "cartpole")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "not a distilled Atari Breakout student" in done.stderr and "CartPole-v1" in done.stderr
    assert csv.read_bytes() == before


def test_probe_rows_come_from_finished_student_runs_and_replace_the_same_run(tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    from workbench.distill.loop import distill, distill_config
    from workbench.results import PROBE_COLUMNS, PROBES, add_probe_rows

    runs = [tmp_path / f"tiny-s{s}" for s in (0, 1)]
    cards = [distill(distill_config("smoke", "cartpole", student_net="tiny", loss="kl", seed=s), out, progress_bar=False)
             for s, out in zip((0, 1), runs)]
    into = tmp_path / "probe.csv"
    table = add_probe_rows(runs[:1], "smoke, tau 0.01", into)
    assert list(table.columns) == PROBE_COLUMNS and len(table) == 1
    assert table["pct_of_teacher"].iloc[0] == pytest.approx(cards[0]["pct_of_teacher"])
    add_probe_rows(runs, "smoke, tau 0.01", into)  # seed 0 again replaces its row; seed 1 is new
    add_probe_rows(runs[1:], "another recipe", into)
    written = pd.read_csv(into, dtype={"beta": str})
    assert list(zip(written["recipe"], written["seed"])) == [("smoke, tau 0.01", 0), ("smoke, tau 0.01", 1),
                                                            ("another recipe", 1)]
    before = into.read_bytes()
    # A run from another version of the teacher, a teacher's own folder, an unfinished run: refused, and nothing
    # is written even where the other runs given are fine.
    other = tmp_path / "other-teacher"
    shutil.copytree(runs[0], other)
    card = json.loads((other / "card.json").read_text())
    (other / "card.json").write_text(json.dumps({**card, "teacher_return_mean": 12.0}))
    with pytest.raises(ValueError, match="teacher that scores 12.0.*distil it again"):
        add_probe_rows([runs[1], other], "third", into)
    with pytest.raises(ValueError, match="not a distilled student"):
        add_probe_rows([TEACHERS_DIR / "cartpole"], "third", into)
    # A run made another way (here: with the weight average) does not go under a recipe it does not follow.
    (other / "card.json").write_text(json.dumps({**card, "ema": 0.999}))
    with pytest.raises(ValueError, match=r"'smoke, tau 0.01' would hold runs that differ in ema \[0.0, 0.999\]"):
        add_probe_rows([other], "smoke, tau 0.01", into)
    (other / "card.json").unlink()
    with pytest.raises(ValueError, match="no card.json.*--resume"):
        add_probe_rows([other], "third", into)
    assert into.read_bytes() == before
    root = Path(__file__).resolve().parents[1]
    committed = PROBES.read_bytes()
    done = subprocess.run([sys.executable, str(root / "scripts" / "probes.py"), "add", "--recipe", "x",
                           str(TEACHERS_DIR / "cartpole")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a distilled student" in done.stderr and PROBES.read_bytes() == committed


TABLE = {"label": "100k steps, tau 0.01 (the table)", "env_steps": 100_000, "tau": 0.01, "beta": "1",
         "runs_in": "rusu_results.csv"}


def test_more_data_table_takes_each_game_at_its_own_recipe():
    from workbench.results import more_data_table

    # The last three runs are not the table's recipe (100k steps, tau 0.01, teacher-driven): they stay out of it.
    results = pd.DataFrame({"teacher": ["a"] * 7, "loss": ["kl", "kl", "kl", "mse", "kl", "kl", "kl"],
                            "seed": [0, 1, 0, 0, 2, 2, 2],
                            "student_net": ["net3", "net3", "tiny", "tiny", "net3", "net3", "net3"],
                            "pct_of_teacher": [100.0, 90.0, 80.0, 1.0, 7.0, 7.0, 7.0],
                            "env_steps": [100_000] * 6 + [400_000], "tau": [0.01] * 4 + [1.0, 0.01, 0.01],
                            "beta": ["1"] * 5 + ["linear:1:0", "1"]})
    probes = pd.DataFrame({"recipe": ["r", "r", "r", "other"], "teacher": ["b"] * 4, "loss": ["kl"] * 4,
                           "student_net": ["net3", "tiny", "tiny", "net3"], "seed": [0, 0, 1, 1],
                           "pct_of_teacher": [50.0, 60.0, 70.0, 500.0], "env_steps": [1_000_000] * 4,
                           "tau": [1.0] * 4, "beta": ["1"] * 4})
    probe = {"env_steps": 1_000_000, "tau": 1.0, "beta": "1", "runs_in": "data_tau_probe.csv"}
    spec = {"loss": "kl", "nets": ["net3", "tiny"], "without": ["b"],
            "recipes": {"table": TABLE, "r": {"label": "r", **probe}, "other": {"label": "other", **probe}},
            "games": {"a": "table", "b": "r"}}
    t = more_data_table(spec, results, probes).set_index("game")
    assert t.loc["a", "recipe"] == TABLE["label"] and t.loc["b", "recipe"] == "r"
    assert (t.loc["a", "net3"], t.loc["a", "net3_seeds"], t.loc["a", "tiny"]) == (95.0, 2, 80.0)
    assert (t.loc["b", "net3"], t.loc["b", "tiny"], t.loc["b", "tiny_seeds"], t.loc["b", "env_steps"]) == \
        (50.0, 65.0, 2, 1_000_000)
    assert t.loc["geometric mean", "net3"] == pytest.approx(math.sqrt(95 * 50), abs=0.05)
    assert t.loc["geometric mean", "tiny"] == pytest.approx(math.sqrt(80 * 65), abs=0.05)
    assert (t.loc["geometric mean without b", "net3"], t.loc["geometric mean without b", "tiny"]) == (95.0, 80.0)
    assert (t.loc["target", "net3"], t.loc["target", "tiny"]) == (100.0, 95.0)
    missing = {**spec, "recipes": {**spec["recipes"], "m": {"label": "missing", **probe}}, "games": {"b": "m"}}
    with pytest.raises(ValueError, match="no kl net3 runs of b under the recipe 'missing'.*scripts/probes.py add"):
        more_data_table(missing, results, probes)
    with pytest.raises(ValueError, match="b takes the recipe 'nowhere', which the spec's recipes do not define"):
        more_data_table({**spec, "games": {"b": "nowhere"}}, results, probes)
    # Runs under a recipe's label that were made otherwise than its fields say are refused, not tabled.
    other_steps = {**spec, "recipes": {**spec["recipes"], "r": {"label": "r", **probe, "env_steps": 2_000_000}}}
    with pytest.raises(ValueError, match="b net3 runs under 'r' in data_tau_probe.csv were not made with the recipe's "
                                         "env_steps 2000000"):
        more_data_table(other_steps, results, probes)
    # A size may take its own recipe (another shape, say): each size reads its rows, the label names both.
    split = more_data_table({**spec, "games": {"b": {"net3": "other", "tiny": "r"}}}, results, probes)
    split = split.set_index("game")
    assert split.loc["b", "recipe"] == "other (net3); r (tiny)"
    assert (split.loc["b", "net3"], split.loc["b", "net3_seeds"], split.loc["b", "tiny"]) == (500.0, 1, 65.0)
    with pytest.raises(ValueError, match=r"names b's recipes for \['net3'\], not for tiny"):
        more_data_table({**spec, "games": {"b": {"net3": "r"}}}, results, probes)


def test_committed_more_data_table_matches_the_probe_file_and_its_figure_shows_it():
    from workbench.plots import more_data_figure
    from workbench.results import more_data_table

    committed = pd.read_csv(Path(CONFIG).parent / "more_data_table.csv",
                            dtype={"net3_seeds": "Int64", "tiny_seeds": "Int64", "env_steps": "Int64"})
    again = more_data_table()
    pd.testing.assert_frame_equal(committed, again, check_dtype=False)
    fig = more_data_figure(again)
    shown = again[~again["game"].str.startswith("target")]
    assert [t.name for t in fig.data] == ["net3", "net3 target 100%", "tiny", "tiny target 95%"]
    assert [x.split("<br>")[0] for x in fig.data[0].x] == [g.split(" without ")[0] for g in shown["game"]]
    assert all(r.replace("; ", "<br>") in x for x, r in zip(fig.data[0].x, shown["recipe"].dropna()))
    assert list(fig.data[2].y) == list(shown["tiny"]) and [s.y0 for s in fig.layout.shapes] == [100.0, 95.0]


def test_long_evaluations_replay_the_cards_episodes_and_play_each_teacher_once(tmp_path, monkeypatch):
    import workbench.reproduce
    from workbench.distill.loop import distill, distill_config
    from workbench.reproduce import long_evaluation_rows
    from workbench.results import long_eval_table

    played, meanwhile = [], []
    real = workbench.reproduce.evaluate_teacher

    def teacher(*a, **k):  # counts the teacher's evaluations, and stands in for another call writing meanwhile
        played.append(a[3])
        for row in meanwhile:
            pd.concat([pd.read_csv(into), row]).to_csv(into, index=False)
        return real(*a, **k)

    monkeypatch.setattr(workbench.reproduce, "evaluate_teacher", teacher)
    runs = [tmp_path / f"tiny-s{s}" for s in (0, 1)]
    cards = [distill(distill_config("smoke", "cartpole", student_net="tiny", loss="kl", seed=s), out, progress_bar=False)
             for s, out in zip((0, 1), runs)]
    into, n = tmp_path / "long.csv", cards[0]["return_n"]
    rows = long_evaluation_rows(runs, "smoke", episodes=n, into=into)
    # The card's own episodes, played again: the same returns for student and teacher (greedy play on seeded envs).
    assert list(rows["return_mean"]) == pytest.approx([c["return_mean"] for c in cards])
    assert list(rows["teacher_return_mean"]) == pytest.approx([c["teacher_return_mean"] for c in cards])
    assert list(rows["card_pct_of_teacher"]) == pytest.approx(list(rows["pct_of_teacher"]))
    assert played == [n], "one teacher evaluation for both students"
    # Another call adds a row while this one plays its teacher: that row is kept.
    meanwhile.append(pd.read_csv(into).iloc[:1].assign(recipe="written meanwhile"))
    longer = long_evaluation_rows(runs[:1], "smoke", episodes=n + 4, into=into)
    meanwhile.clear()
    assert len(longer) == 4 and played == [n, n + 4] and "written meanwhile" in set(longer["recipe"])
    again = long_evaluation_rows(runs[:1], "smoke", episodes=n + 4, into=into)
    assert len(again) == 4 and played == [n, n + 4], "the same run again replaces its row; the teacher's is reused"
    # Rows measured against another teacher of the same name (its card scored otherwise) lend it no mean.
    longest = (again["recipe"] == "smoke") & (again["episodes"] == n + 4)
    again.assign(teacher_card_return_mean=again["teacher_card_return_mean"] - 1.0,
                 teacher_return_mean=-7.0).to_csv(into, index=False)
    replayed = long_evaluation_rows(runs[:1], "smoke", episodes=n + 4, into=into)
    assert played == [n, n + 4, n + 4], "a replaced teacher is played again"
    assert list(replayed[longest]["teacher_return_mean"]) == list(again[longest]["teacher_return_mean"])
    again.to_csv(into, index=False)
    smoke = {"smoke": {"label": "smoke", "env_steps": 2_000, "tau": 0.01, "beta": "1"}}
    table = long_eval_table({"loss": "kl", "nets": ["tiny"], "recipes": smoke,
                             "games": {"cartpole": "smoke", "other": "smoke"}},
                            pd.read_csv(into), episodes=n).set_index("game")
    assert table.loc["cartpole", "tiny_seeds"] == 2
    per_size = long_eval_table({"loss": "kl", "nets": ["tiny"], "recipes": smoke,
                                "games": {"cartpole": {"tiny": "smoke"}}},
                               pd.read_csv(into), episodes=n).set_index("game")
    assert per_size.loc["cartpole", "tiny"] == table.loc["cartpole", "tiny"]
    assert table.loc["cartpole", "tiny"] == pytest.approx(rows["pct_of_teacher"].mean(), abs=0.05)
    assert "geometric mean, 1 of 2 games" in table.index and table.loc["target", "tiny"] == 95.0
    before = into.read_bytes()
    with pytest.raises(ValueError, match="episodes 0: give a positive number"):
        long_evaluation_rows(runs, "smoke", episodes=0, into=into)
    (runs[1] / "card.json").unlink()
    with pytest.raises(ValueError, match="no card.json.*--resume"):
        long_evaluation_rows(runs, "smoke", episodes=n, into=into)
    assert into.read_bytes() == before
    with pytest.raises(ValueError, match="no 99-episode evaluations.*probes.py evaluate"):
        long_eval_table({"loss": "kl", "nets": ["tiny"], "recipes": smoke, "games": {"cartpole": "smoke"}},
                        pd.read_csv(into), 99)


def test_committed_100_episode_table_matches_the_long_evaluations():
    from workbench.plots import more_data_figure
    from workbench.results import LONG_EVALS, long_eval_table

    committed = pd.read_csv(LONG_EVALS.with_name("more_data_table_100ep.csv"),
                            dtype={"net3_seeds": "Int64", "tiny_seeds": "Int64", "episodes": "Int64"})
    again = long_eval_table(episodes=100)
    pd.testing.assert_frame_equal(committed, again, check_dtype=False)
    long = pd.read_csv(LONG_EVALS)
    assert (long["episodes"] == 100).all() and long["pct_of_teacher"].notna().all()
    # Each game's teacher was played once over the 100 episodes: one teacher mean per game.
    assert long.groupby("teacher")["teacher_return_mean"].nunique().eq(1).all()
    assert [t.name for t in more_data_figure(again).data][::2] == ["net3", "tiny"]


def test_more_data_commands_are_sweeps_that_make_each_recipe():
    import json
    import shlex

    from workbench.cli import build_parser
    from workbench.results import MORE_DATA, more_data_commands, recipe_for

    def parsed(spec):
        commands = [build_parser().parse_args(shlex.split(c)[1:]) for c in more_data_commands(spec, out="o")]
        assert all(a.command == "sweep" for a in commands)
        made = {}
        for a in commands:
            layers = dict(item.split("=") for item in a.layers or [])
            for net in a.nets:
                made[(a.teacher[0], net)] = {"total_steps": a.total_steps, "tau": a.tau, "beta": a.betas[0]} | (
                    {"layers": layers[net]} if net in layers else {})
            assert a.out == f"o/{a.teacher[0]}" and a.seeds == [0, 1, 2] and a.losses == [spec["loss"]]
        return commands, made

    def recipe(label, env_steps, beta="1", layers=None):
        shape = {"layers": layers} if layers else {}
        return {"label": label, "env_steps": env_steps, "tau": 1.0, "beta": beta} | shape

    spec = {"loss": "kl", "nets": ["net3", "tiny"],
            "recipes": {"table": TABLE,
                        "dagger-12x24": recipe("2M steps, DAgger, 12:24", 2_000_000, "linear:1:0", "12:24"),
                        "dagger-8x16": recipe("2M steps, DAgger, 8:16", 2_000_000, "linear:1:0", "8:16"),
                        "4M": recipe("4M steps, tau 1", 4_000_000),
                        "1M-8x16": recipe("1M steps, tau 1, layers 8:16", 1_000_000, layers="8:16")},
            "games": {"a": "table", "b": {"net3": "dagger-12x24", "tiny": "dagger-8x16"},
                      "c": {"net3": "4M", "tiny": "1M-8x16"}}}
    commands, made = parsed(spec)
    # sizes that differ only in shape share a sweep; another step count needs its own
    assert [(a.teacher, a.nets) for a in commands] == [(["a"], ["net3", "tiny"]), (["b"], ["net3", "tiny"]),
                                                        (["c"], ["net3"]), (["c"], ["tiny"])]
    assert made[("a", "tiny")] == {"total_steps": 100_000, "tau": 0.01, "beta": "1"}
    assert made[("b", "net3")] == {"total_steps": 2_000_000, "tau": 1.0, "beta": "linear:1:0", "layers": "12:24"}
    assert made[("c", "net3")] == {"total_steps": 4_000_000, "tau": 1.0, "beta": "1"}
    assert made[("c", "tiny")] == {"total_steps": 1_000_000, "tau": 1.0, "beta": "1", "layers": "8:16"}
    # A recipe says what a sweep makes, in fields: one it cannot make, or one left out, stops the commands.
    for wrong, said in [({"ema": 0.999}, "ema is not a field a sweep can make"), ({"tau": None}, "tau None is not"),
                        ({"beta": 0}, "beta 0 is not a string")]:
        broken = {**spec, "recipes": {**spec["recipes"], "4M": {**spec["recipes"]["4M"], **wrong}}}
        with pytest.raises(ValueError, match=f"recipe '4M': {said}"):
            more_data_commands(broken)
    no_tau = {k: v for k, v in spec["recipes"]["4M"].items() if k != "tau"}
    with pytest.raises(ValueError, match="recipe '4M': it does not say its tau"):
        more_data_commands({**spec, "recipes": {**spec["recipes"], "4M": no_tau}})
    # the committed table: every game and size is made with the fields of the recipe it reads
    committed = json.loads(MORE_DATA.read_text())
    _, made = parsed(committed)
    fields = {(game, net): recipe_for(committed, game, net) for game in committed["games"] for net in committed["nets"]}
    assert made == {key: {"total_steps": r["env_steps"], "tau": r["tau"], "beta": r["beta"]}
                    | ({"layers": r["layers"]} if "layers" in r else {}) for key, r in fields.items()}
    assert made[("minatar-asterix", "net3")] == {"total_steps": 4_000_000, "tau": 1.0, "beta": "linear:1:0",
                                                 "layers": "12:24"}


def test_more_data_recipes_are_json_fields_and_their_labels_key_the_committed_rows():
    from workbench.results import LONG_EVALS, PROBES, more_data_commands, more_data_spec

    spec = more_data_spec()
    # Changing a field changes the command: nothing is read back from the label.
    fields = {**spec["recipes"]["400k-tau1"], "env_steps": 4_000_000}
    moved = {**spec, "recipes": {**spec["recipes"], "400k-tau1": fields}}
    assert "--total-steps 4000000 --tau 1 --out runs/more-data/minatar-breakout" in more_data_commands(moved)[1]
    assert fields["label"] == "400k steps, tau 1" and "--total-steps 400000 " in more_data_commands(spec)[1]
    # A recipe is defined once and its label is the key of its rows in the committed CSVs.
    labels = set(pd.read_csv(PROBES)["recipe"]) | set(pd.read_csv(LONG_EVALS)["recipe"])
    assert {r["label"] for r in spec["recipes"].values()} <= labels


def test_results_and_plots_import_no_training_code():
    import subprocess
    import sys

    check = ("import sys, workbench.results, workbench.plots; "
             "loaded = sorted(m for m in sys.modules if m.startswith(('workbench.distill', 'workbench.agents', "
             "'workbench.sweep', 'workbench.reproduce'))); print(loaded); assert not loaded")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
