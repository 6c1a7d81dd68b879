"""course-grade's output and its own integrity: safe grades.csv cells and feedback file names,
the package hash before and after a batch, and Gradescope's results.json and autograder zip.

Fast: the batches here hold invalid notebooks (no sandbox process starts) or one solution notebook.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

import grading_fixtures as fx
from course_lib.authoring import gradescope as autograder
from course_lib.grading import cli, grade, main
from course_lib.grading.gradescope import results
from course_lib.grading.integrity import PACKAGE, PackageChanged, changed_files, snapshot
from course_lib.grading.report import feedback_names, write_feedback, write_grades
from course_lib.grading.scoring import Row

HOSTILE_IDS = [
    "=cmd|' /C calc'!A0",  # a spreadsheet formula (OWASP CSV injection)
    "+SUM(1+1)",
    "-2+3",
    "@SUM(A1)",
    "\tleading tab",
    "..%2f..%2fx",  # an encoded path traversal
    "..",
    "a b",  # three ids that sanitise to the same name
    "a_b",
    "a?b",
    "Ann",  # and two that only a case-insensitive filesystem confuses
    "ann",
    "CON",  # a Windows device name
    "line\nbreak",
]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
# grades.csv: no cell a spreadsheet would run; feedback/: one file per student, inside the folder.
# --------------------------------------------------------------------------------------------


def test_text_cells_that_start_a_formula_get_a_quote_and_numbers_do_not(tmp_path):
    rows = [Row(s, f"class/{s}.ipynb", status="invalid-notebook", reasons=["=HYPERLINK(\"http://x\")"])
            for s in HOSTILE_IDS]
    write_grades(rows, {}, tmp_path / "grades.csv")
    table = _read_csv(tmp_path / "grades.csv")
    assert [r["student"] for r in table] == [("'" + s if s[0] in "=+-@\t" else s) for s in HOSTILE_IDS]
    for r in table:
        assert r["reason"] == "'=HYPERLINK(\"http://x\")"
        for key, value in r.items():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (key, value)
        assert r["total"] == "0.00" and r["max"] == "0.00"  # numbers stay numbers


def test_feedback_file_names_stay_inside_the_folder_and_never_collide(tmp_path):
    folder = tmp_path / "out" / "feedback"
    rows = [Row(s, f"{s}.ipynb", status="invalid-notebook", reasons=["x"]) for s in HOSTILE_IDS]
    rows.append(Row("good_student", "good_student.ipynb"))
    write_feedback(rows, folder)
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == len(HOSTILE_IDS) + 1  # no two students share (overwrite) a file
    assert len({n.lower() for n in written}) == len(written)  # not even on a case-insensitive filesystem
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == \
        sorted(f"out/feedback/{n}" for n in written)  # nothing outside feedback/
    for name in written:
        stem = name[: -len(".md")]
        assert set(stem) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"), name
        assert not stem.startswith(".") and stem.split(".")[0].lower() != "con", name
    names = feedback_names([r.student for r in rows])
    assert names["good_student"] == "good_student.md"  # a plain id keeps its name
    for student, name in names.items():  # each file holds its own student's feedback
        assert (folder / name).read_text(encoding="utf-8").startswith("# Feedback for "
                                                                      + student.replace("\n", "?").replace("\t", "?"))
    assert names == feedback_names(list(reversed([r.student for r in rows])))  # independent of order


def _invalid_notebook(path: Path) -> None:
    path.write_text("{ not a notebook", encoding="utf-8")


def test_hostile_file_names_through_the_whole_grader(tmp_path):
    class_ = tmp_path / "class"
    class_.mkdir()
    # a file name cannot hold "/": the formula is the well-known one with a backslash instead
    names = ["=cmd|' \\C calc'!A0", "..%2f..%2fx", "a b", "a_b", "a?b"]
    try:
        _invalid_notebook(class_ / "line\nbreak.ipynb")
        names.append("line\nbreak")
    except OSError:  # a filesystem that refuses a newline in a name
        pass
    for name in names:
        _invalid_notebook(class_ / f"{name}.ipynb")
    (class_ / "%2e%2e%2f..%2fy").mkdir()  # a student folder with a traversal-like name
    _invalid_notebook(class_ / "%2e%2e%2f..%2fy" / "01_dot_products.ipynb")
    names.append("%2e%2e%2f..%2fy")
    names.remove("..%2f..%2fx")  # starts with a dot: a hidden file, skipped like .ipynb_checkpoints
    out = tmp_path / "out"
    rows = grade([class_], out, timeout=10, memory=1024, jobs=1, progress=False, fork_server=False)
    assert sorted(r.student for r in rows) == sorted(names)
    assert all(r.status == "invalid-notebook" for r in rows)
    table = _read_csv(out / "grades.csv")
    assert "'=cmd|' \\C calc'!A0" in [r["student"] for r in table]
    assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in table for v in r.values())
    written = sorted(p.name for p in (out / "feedback").iterdir())
    assert len(written) == len(names)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                  and "class" not in p.relative_to(tmp_path).parts) == \
        sorted(["out/grades.csv", "out/run.json", "out/summary.md", *(f"out/feedback/{n}" for n in written)])
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert all(name not in summary for name in names if len(name) > 3)  # the class summary names no student


# --------------------------------------------------------------------------------------------
# The package hash: a batch that changes the hashed folder fails loudly, its rows still written.
# --------------------------------------------------------------------------------------------


def _copy_package(tmp_path: Path) -> Path:
    copy = tmp_path / "package_copy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_snapshot_sees_every_change_and_skips_pycache(tmp_path):
    copy = _copy_package(tmp_path)
    first = snapshot(copy)
    assert first == snapshot(copy) and "checks/core.py" in first.files
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert snapshot(copy) == first  # caches come and go; they are not the course's code
    core = copy / "checks" / "core.py"
    core.write_text(core.read_text(encoding="utf-8") + "\n# tampered\n", encoding="utf-8")
    (copy / "attention.py").unlink()
    (copy / "evil.py").write_text("x = 1\n", encoding="utf-8")
    after = snapshot(copy)
    assert after.digest != first.digest
    assert changed_files(first, after) == ["attention.py (removed)", "checks/core.py (modified)", "evil.py (added)"]


class _NoForkServer:
    def __init__(self, workspace, device="cpu"):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("tamper", [False, True])
def test_a_batch_that_changes_the_package_fails_loudly(tmp_path, monkeypatch, capsys, tamper):
    copy = _copy_package(tmp_path)
    class_ = tmp_path / "class"
    class_.mkdir()
    for student in ("alice", "bob"):
        _invalid_notebook(class_ / f"{student}.ipynb")

    def grading_step(sub, chapters, settings):  # stands for a submission that escaped the sandbox
        if tamper and sub.student == "bob":
            (copy / "checks" / "planted.py").write_text("judge = lambda *a: 'full marks'\n", encoding="utf-8")
        return Row(sub.student, sub.notebook, chapter="01_dot_products")

    monkeypatch.setattr(cli, "grade_submission", grading_step)
    monkeypatch.setattr(cli, "ForkServer", _NoForkServer)
    out = tmp_path / "out"
    code = main([str(class_), "--out", str(out), "--jobs", "1", "--no-progress", "--package", str(copy)])
    captured = capsys.readouterr()
    table = _read_csv(out / "grades.csv")
    assert [r["student"] for r in table[:2]] == ["alice", "bob"]  # the rows are written either way
    if not tamper:
        assert code == 0 and len(table) == 2 and "INTEGRITY" not in captured.err
        return
    assert code == 3
    assert "INTEGRITY FAILURE" in captured.err and "checks/planted.py (added)" in captured.err
    assert table[-1]["student"] == "<grader>" and table[-1]["status"] == "grader-error"
    assert "checks/planted.py (added)" in table[-1]["reason"]
    (copy / "checks" / "planted.py").unlink()
    with pytest.raises(PackageChanged, match="planted.py"):  # the same through the Python API
        grade([class_], tmp_path / "out2", progress=False, package=copy, fork_server=False)


# --------------------------------------------------------------------------------------------
# Gradescope: results.json for one submission, and the autograder zip.
# --------------------------------------------------------------------------------------------


def test_gradescope_results_on_a_solution_notebook(tmp_path):
    submission = tmp_path / "submission"
    submission.mkdir()
    name = fx.chapter("01")
    fx.write(fx.solution(name), submission / f"{name}.ipynb")
    out = tmp_path / "results"
    assert main([str(submission), "--format", "gradescope", "--out", str(out), "--jobs", "1", "--no-progress",
                 "--timeout", "60"]) == 0
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert fx.gradescope_schema_errors(data) == []
    assert not (out / "grades.csv").exists()
    assert data["tests"] and all(t["name"].startswith(f"{name}: ") for t in data["tests"])
    assert all(t["score"] == t["max_score"] > 0 and t["status"] == "passed" for t in data["tests"])
    assert data["score"] == pytest.approx(sum(t["max_score"] for t in data["tests"]))


def test_gradescope_results_for_an_empty_or_broken_submission(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--format", "gradescope", "--out", str(tmp_path / "r1")]) == 0
    data = json.loads((tmp_path / "r1" / "results.json").read_text(encoding="utf-8"))
    assert fx.gradescope_schema_errors(data) == [] and data["score"] == 0 and "No notebook" in data["output"]
    broken = results([Row("s", "s.ipynb", status="invalid-notebook", reasons=["not a valid notebook"])])
    assert fx.gradescope_schema_errors(broken) == [] and broken["score"] == 0
    assert "not a valid notebook" in broken["tests"][0]["output"]
    assert fx.gradescope_schema_errors({"tests": [{"name": 1, "score": -1}]})  # the checker does reject


def test_the_autograder_zip_has_executable_scripts_and_the_pinned_torch(tmp_path):
    path = autograder.build(tmp_path / "autograder.zip")
    pin = autograder.torch_pin()
    assert pin.startswith("torch")
    with zipfile.ZipFile(path) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        for script in ("setup.sh", "run_autograder"):
            mode = infos[script].external_attr >> 16
            assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, (script, oct(mode))
            assert archive.read(script).startswith(b"#!/usr/bin/env bash\n")
        setup = archive.read("setup.sh").decode()
        run = archive.read("run_autograder").decode()
        assert f'"{pin}"' in setup
        assert setup.index(pin) < setup.index("pip install -e /autograder/source")  # torch first, then the course
        assert "course-grade /autograder/submission --format gradescope --out /autograder/results" in run
        assert "pyproject.toml" in infos and "course_lib/grading/cli.py" in infos
        assert {n for n in infos if n.startswith("solutions/")} == {f"solutions/{c}.ipynb" for c in fx.chapters()}
        assert not any("__pycache__" in n for n in infos)
    assert path.read_bytes() == autograder.build(tmp_path / "again.zip").read_bytes()  # reproducible
