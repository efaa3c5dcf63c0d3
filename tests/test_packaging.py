import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    for sep in ("==", ">=", "<=", "~=", ">", "<", "["):
        req = req.split(sep)[0]
    return req.strip().lower()


def test_environment_yml_parses_and_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "workbench"
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"] + project["optional-dependencies"]["ray"]
    wanted += project["optional-dependencies"]["sb3"]
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(wanted)
    assert "-e ." in pip
    assert conda_python == "python=3.11"


def test_torch_is_pinned_first_in_the_makefile_and_matches_pyproject():
    makefile = (ROOT / "Makefile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(d for d in project["dependencies"] if _name(d) == "torch")
    assert f"TORCH := {pin}" in makefile
    assert makefile.index("$(TORCH)") < makefile.index("-e '.[dev,ray,sb3]'")


def test_readme_shows_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "doctor" in out.stdout
