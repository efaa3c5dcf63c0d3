"""Every notebook runs headless through papermill with CI-sized parameters; reports export standalone HTML."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.report import ParameterError, check_parameters, execute, notebook_parameters, parse_value, to_html

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# name -> (CI parameters, minimum number of plotly figures in the output)
CASES = {
    "00_tour": ({"total_steps": 6_000, "eval_episodes": 3}, 2),
    "01_train_teacher": ({"total_steps": 4_096}, 2),
    "02_distill": ({"total_steps": 6_000, "layers": "12:24", "device": "cpu"}, 2),  # net3 at its own shape
    "03_frame_by_frame": ({"max_steps": 80, "branch_steps": 10}, 4),
    "04_compression_vs_performance": ({"total_steps": 2_048, "nets": ["tiny"], "losses": ["kl"]}, 1),
    "05_realtime_distillation": ({"preset": "smoke", "teacher_steps": 4_096, "distill_steps": 1_024,
                                  "eval_points": 3}, 2),
    "06_multitask_distillation": ({"preset": "smoke", "steps_per_game": 1_024, "max_steps": 40}, 2),
    "07_dual_policy_distillation": ({"total_steps": 8_192, "every": 1, "max_steps": 60}, 5),
    "08_balanced_distillation": ({"total_steps": 12_000, "stages": 3, "eval_episodes": 2, "max_steps": 60}, 5),
    "09_dataset_distillation": ({"pool_size": 1_000, "eval_episodes": 3, "max_steps": 60}, 3),
    "11_bring_your_own_teacher": ({"sb3_steps": 8_192, "total_steps": 4_096, "max_steps": 60}, 3),
    "10_reproduce_policy_distillation": ({"results_csv": "", "preset": "smoke", "teachers": ["cartpole"],
                                          "nets": ["tiny"], "losses": ["kl"], "seeds": [0]}, 4),
}


def test_every_notebook_has_a_case_and_is_committed_clean():
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert set(CASES) <= set(found), f"notebooks without a CI case: {set(found) - set(CASES)}"
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(str(path), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name}: no parameters cell"
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert notebook_parameters(path)["interactive"]["type"] == "bool"


def _plotly_outputs(nb) -> int:
    return sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.outputs)


@pytest.mark.xdist_group("notebooks-a")
@pytest.mark.parametrize("name", ["00_tour", "03_frame_by_frame", "01_train_teacher", "05_realtime_distillation",
                                  "11_bring_your_own_teacher", "07_dual_policy_distillation"])
def test_notebook_runs_headless_a(name, tmp_path):
    _run_case(name, tmp_path)


@pytest.mark.xdist_group("notebooks-b")
@pytest.mark.parametrize("name", ["02_distill", "04_compression_vs_performance", "06_multitask_distillation",
                                  "10_reproduce_policy_distillation", "09_dataset_distillation",
                                  "08_balanced_distillation"])
def test_notebook_runs_headless_b(name, tmp_path):
    _run_case(name, tmp_path)


def _run_case(name, tmp_path):
    params, min_figures = CASES[name]
    work = tmp_path / "nb"  # the notebook's ../runs/... outputs land in tmp_path/runs
    work.mkdir()
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", work)
    out = execute(work / f"{name}.ipynb", tmp_path / f"{name}.out.ipynb", params, progress=False)
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert _plotly_outputs(nb) >= min_figures
    # With interactive off every figure also carries HTML, so an exported report draws it offline.
    for c in nb.cells:
        for o in getattr(c, "outputs", []):
            if "application/vnd.plotly.v1+json" in o.get("data", {}):
                assert "text/html" in o["data"]
    if name in ("00_tour", "02_distill", "03_frame_by_frame", "06_multitask_distillation", "11_bring_your_own_teacher",
                "09_dataset_distillation", "07_dual_policy_distillation", "08_balanced_distillation"):
        state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        kinds = {m["model_name"] for m in state.values()}
        assert {"ImageModel", "ButtonModel"} & kinds or "IntTextModel" in kinds
    if name == "03_frame_by_frame":
        gif = tmp_path / "runs" / "frame_by_frame" / "episode.gif"  # the notebook's default video path
        assert gif.stat().st_size > 1_000
    html = to_html(out).decode()
    assert "plotly" in html.lower() and "Plotly.newPlot" in html
    if name == "02_distill":  # the form's shape field reached the run
        card = json.loads((next((tmp_path / "runs" / "distill").glob("*/net3@12x24-kl-s0")) / "card.json").read_text())
        assert (card["net"]["conv"], card["net"]["hidden"]) == ([12], [24])
        assert card["device"] == "cpu"  # and its device field
    if name == "11_bring_your_own_teacher":  # the SB3 model trained in the notebook became a teacher, then a student
        teacher = json.loads(next((tmp_path / "runs" / "byo_teacher").glob("*/teacher/card.json")).read_text())
        assert teacher["origin"]["library"] == "stable-baselines3" and teacher["library_return_difference"] == 0
        student = json.loads(next((tmp_path / "runs" / "byo_teacher").glob("*/student/card.json")).read_text())
        assert student["student_params"] == 114 and student["teacher"].endswith("teacher")
    if name == "07_dual_policy_distillation":  # a pair and its baseline, the player naming the two peers
        pair = json.loads(next((tmp_path / "runs" / "dual").glob("*/dual/card.json")).read_text())
        assert pair["distill_steps"] == 4 and pair["b"]["params"] < pair["a"]["params"]
        assert next((tmp_path / "runs" / "dual").glob("*/independent/card.json")).exists()
        assert "learner a" in html and "learner b" in html
    if name == "09_dataset_distillation":  # every set became a file and a student trained from it alone
        runs = next((tmp_path / "runs" / "dataset_distillation").glob("*"))
        assert len(list(runs.glob("*.safetensors"))) == 4
        cards = [json.loads(p.read_text()) for p in runs.glob("student-*/card.json")]
        assert len(cards) == 4 and all(c["env_steps"] == 0 and c["dataset_size"] in (16, 64) for c in cards)
    if name == "08_balanced_distillation":  # both students spent the same budget; the stages and the tail are shown
        runs = next((tmp_path / "runs" / "balanced").glob("*"))
        cards = {k: json.loads((runs / k / "card.json").read_text()) for k in ("balanced", "uniform")}
        assert cards["balanced"]["teacher_queries"] == cards["uniform"]["teacher_queries"] == 12_000
        assert len(cards["balanced"]["balanced"]["stages"]) == 3
        assert "recall after stage 2" in html and "balanced accuracy" in html
    if name == "10_reproduce_policy_distillation":  # geometric means say what they are taken over
        assert "Each geometric mean is over kl: 1 games, at least 1 seeds" in html
        assert "workbench --threads 1 sweep --teacher minatar-asterix" in html  # the commands that make the runs
        assert "geometric mean without atari-breakout" in html and "4M steps, tau 1" in html  # the more-data table
        assert "card_net3" in html and "100 episodes of student and teacher" in html  # and from 100-episode evaluations


def test_parameter_values_parse_and_type_check():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("False") is False
    assert parse_value("[1, 2]") == [1, 2] and parse_value("net3") == "net3"
    nb = NOTEBOOKS / "02_distill.ipynb"
    assert check_parameters(NOTEBOOKS / "06_multitask_distillation.ipynb", {"width": 1}) == {"width": 1.0}
    assert check_parameters(nb, {"tau": 1.0}) == {"tau": 1.0}  # None by default: the teacher's temperature
    with pytest.raises(ParameterError, match="'total_steps' .* must be int"):
        check_parameters(nb, {"total_steps": "many"})
    with pytest.raises(ParameterError, match="has no parameter 'lr'.*total_steps"):
        check_parameters(nb, {"lr": 0.1})


def test_report_cli_refuses_a_wrong_type_before_running(tmp_path, capsys):
    rc = main(["report", str(NOTEBOOKS / "03_frame_by_frame.ipynb"), "-p", "max_steps", "lots",
               "--out", str(tmp_path / "r.html")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "max_steps" in err and "must be int" in err
    assert not (tmp_path / "r.html").exists()
