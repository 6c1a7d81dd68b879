"""course-grade meets the tools a course already uses: nbgrader's folder layouts in, Canvas's gradebook out.

One small batch (module fixture, chapter 02 only, three notebooks graded) reads an nbgrader course
directory and an nbgrader exchange's inbound folder at once, with ``--roster`` and ``--lms canvas``;
the tests read its files. The other tests grade nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

import grading_fixtures as fx
from course_lib.checks.points import points_for
from course_lib.grading import discover_chapters, find_submissions, grade, main
from course_lib.grading.discovery import Chapter, GradedExercise
from course_lib.grading.layouts import latest_inbound, parse_inbound_name, resolve_layout
from course_lib.grading.lms import canvas_rows
from course_lib.grading.scoring import ExerciseGrade, Row

CHAPTER = "02_softmax"
SEED = 5
OLD = "carol+ps1+2026-01-01 09:00:00.000000 UTC+AAAAAAAAAAAA"
NEW = "carol+ps1+2026-01-02 09:00:00.000000 UTC+Bb-_9Yz0Q1xw"
ROSTER = """submission,lms_id,name
alice,101,Alice
bob,102,
carol,103,
nobody,104,=HYPERLINK("x")
"""


def _course(root: Path) -> tuple[Path, Path]:
    """An nbgrader course directory and an exchange's course folder, with notebooks where nbgrader puts them."""
    course, exchange = root / "course", root / "exchange" / "course101"
    fx.write(fx.solution(CHAPTER), course / "submitted" / "alice" / "ps1" / f"{CHAPTER}.ipynb")
    (course / "submitted" / "alice" / "ps1" / "timestamp.txt").write_text("2026-01-02 09:00:00.000000 UTC")
    fx.write(fx.exercise(CHAPTER), course / "submitted" / "bob" / "ps1" / f"{CHAPTER}.ipynb")
    for step in ("source/ps1", "release/ps1", "autograded/alice/ps1"):  # the instructor's: never graded
        fx.write(fx.solution(CHAPTER), course / step / f"{CHAPTER}.ipynb")
    fx.write(fx.exercise(CHAPTER), exchange / "inbound" / OLD / f"{CHAPTER}.ipynb")  # superseded
    multiplied = fx.with_body(fx.solution(CHAPTER), "softmax_with_temperature", "return softmax(x * temperature, dim=-1)")
    fx.write(multiplied, exchange / "inbound" / NEW / f"{CHAPTER}.ipynb")
    return course, exchange


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    course, exchange = _course(root)
    roster, out = root / "roster.csv", root / "out"
    roster.write_text(ROSTER, encoding="utf-8")
    solutions = root / "solutions"
    solutions.mkdir()
    (solutions / f"{CHAPTER}.ipynb").write_bytes((fx.SOLUTIONS / f"{CHAPTER}.ipynb").read_bytes())
    rows = grade([course, exchange], out, timeout=30, memory=1024, jobs=2, seed=SEED, progress=False,
                 solutions=solutions, roster=roster, lms="canvas")
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        grades = list(csv.DictReader(f))
    with open(out / "canvas.csv", newline="", encoding="utf-8") as f:
        canvas = list(csv.reader(f))
    names = discover_chapters(solutions, SEED)[CHAPTER].names
    return SimpleNamespace(rows=rows, grades=grades, canvas=canvas, out=out,
                           most=sum(points_for(n) for n in names))


# --------------------------------------------------------------------------------------------
# 1. nbgrader's layouts: submitted/<student>/<assignment>/ and the exchange's inbound/.
# --------------------------------------------------------------------------------------------


def test_nbgrader_folders_are_graded_where_nbgrader_puts_them(batch):
    graded = sorted((r["student"], r["notebook"], r["status"]) for r in batch.grades if r["status"] != "no-submission")
    assert graded == [
        ("alice", f"submitted/alice/ps1/{CHAPTER}.ipynb", "ok"),
        ("bob", f"submitted/bob/ps1/{CHAPTER}.ipynb", "not-attempted"),
        ("carol", f"inbound/{NEW}/{CHAPTER}.ipynb", "ok"),  # the latest of carol's two submissions only
    ]
    assert {r["chapter"] for r in batch.grades if r["status"] != "no-submission"} == {CHAPTER}
    assert {r["lms_id"] for r in batch.grades} == {"101", "102", "103", "104"}  # the roster matched the ids
    assert sorted(p.name for p in (batch.out / "feedback").iterdir()) == ["alice.md", "bob.md", "carol.md"]


@pytest.mark.parametrize("name, expected", [
    (NEW, ("carol", "ps1", "2026-01-02 09:00:00.000000 UTC")),
    ("dan+ps 2+2026-03-04 05:06:07 UTC", ("dan", "ps 2", "2026-03-04 05:06:07 UTC")),  # no random part
    ("e+f+g+ps1+2026-03-04 05:06:07.5 UTC+xyz", ("e+f+g", "ps1", "2026-03-04 05:06:07.5 UTC")),
    ("alice", None),
    ("alice+ps1", None),
    ("alice+ps1+yesterday", None),
])
def test_inbound_names_are_read(name, expected):
    parsed = parse_inbound_name(name)
    assert (parsed and (parsed.student, parsed.assignment, parsed.timestamp)) == expected


def test_only_the_latest_inbound_submission_counts_and_strays_are_reported(tmp_path):
    inbound = tmp_path / "inbound"
    for name in (OLD, NEW, "carol+ps2+2025-12-31 23:59:59.000000 UTC+x", "not-a-submission"):
        (inbound / name).mkdir(parents=True)
    chosen, strays = latest_inbound(inbound)
    assert [(s, p.name) for s, p in chosen] == [("carol", NEW), ("carol", "carol+ps2+2025-12-31 23:59:59.000000 UTC+x")]
    assert [p.name for p in strays] == ["not-a-submission"]
    subs = find_submissions([inbound], exclude=[])
    assert [(s.student, s.path is None) for s in subs] == [("carol", True), ("carol", True), ("not-a-submission", True)]
    assert subs[-1].problem.startswith("not an nbgrader submission")


def test_layout_auto_folders_and_nbgrader(tmp_path, capsys):
    course, _ = _course(tmp_path)
    assert resolve_layout(course) == ("submitted", course / "submitted")
    assert resolve_layout(course / "submitted") == ("submitted", course / "submitted")
    direct = find_submissions([course / "submitted"], exclude=[])
    assert [(s.student, s.notebook) for s in direct] == [("alice", f"submitted/alice/ps1/{CHAPTER}.ipynb"),
                                                         ("bob", f"submitted/bob/ps1/{CHAPTER}.ipynb")]
    plain = find_submissions([course], exclude=[], layout="folders")  # each top folder is a student
    assert sorted({s.student for s in plain}) == ["autograded", "release", "source", "submitted"]
    with pytest.raises(ValueError, match="not an nbgrader folder"):
        resolve_layout(course / "source", "nbgrader")
    with pytest.raises(SystemExit) as exit_:
        main([str(course / "source"), "--out", str(tmp_path / "out"), "--layout", "nbgrader", "--no-progress"])
    assert exit_.value.code == 2 and "not an nbgrader folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# 2. Canvas's gradebook import: canvas.csv.
# --------------------------------------------------------------------------------------------


def test_canvas_csv_has_canvas_header_points_possible_and_a_row_per_student(batch):
    header, possible, *students = batch.canvas
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", CHAPTER]
    assert possible == ["Points Possible", "", "", "", "", f"{batch.most:.2f}"]
    assert students[1] == ["alice", "101", "", "", "", f"{batch.most:.2f}"]
    carol = batch.most - points_for("softmax_with_temperature")  # multiplying by T earns nothing there
    assert students[2:] == [["bob", "102", "", "", "", "0.00"], ["carol", "103", "", "", "", f"{carol:.2f}"]]
    assert students[0] == ["'=HYPERLINK(\"x\")", "104", "", "", "", ""]  # no submission: no score; no formula
    by_student = {r["student"]: r for r in batch.grades}
    assert float(by_student["carol"]["total"]) == pytest.approx(carol)  # the same number as grades.csv
    assert float(by_student["alice"]["max"]) == pytest.approx(batch.most)


def _row(student, chapter, total, lms_id="", status="ok"):
    row = Row(student, f"{student}.ipynb", chapter=chapter, status=status, lms_id=lms_id)
    row.grades = [ExerciseGrade("e", 4.0, earned=total)]
    return row


def test_canvas_rows_merge_one_lms_id_keep_the_best_and_skip_grader_errors():
    chapters = {c: Chapter(c, [GradedExercise(None, "", 4.0)]) for c in ("01_dot_products", "02_softmax")}
    rows = [_row("jane_7_1_01_dot_products", "01_dot_products", 3.0, "7"),  # a Canvas download: one id per file
            _row("jane_7_2_02_softmax", "02_softmax", 1.0, "7"),
            _row("jane_7_3_02_softmax", "02_softmax", 2.5, "7"),  # two notebooks of one chapter: the best
            _row("@bob", "02_softmax", 4.0, status="grader-error"),  # a grader bug is no zero
            Row("<grader>", "", status="grader-error")]  # the integrity alarm is no student
    assert canvas_rows(rows, chapters) == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "01_dot_products", "02_softmax"],
        ["Points Possible", "", "", "", "", "4.00", "4.00"],
        ["'@bob", "", "", "", "", "", ""],
        ["jane_7_1_01_dot_products", "7", "", "", "", "3.00", "2.50"],
    ]
