"""course-grade's reports for the instructor: statuses that say what happened, the exercise version,
the output folder, the roster, grades.csv's layout, run.json, summary.md, and partial credit that a
wrong formula cannot earn by coincidence.

One small batch (module fixture, chapter 02 only, six notebooks) is graded once; the tests read
its files. The other tests grade nothing, or only notebooks that never reach a sandbox.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

import grading_fixtures as fx
from course_lib import checks
from course_lib.authoring.build_exercises import exercise_version, make_exercise
from course_lib.checks import core
from course_lib.checks.points import points_for
from course_lib.grading import discover_chapters, grade, main
from course_lib.grading.discovery import identify_chapter, python_source
from course_lib.grading.scoring import syntax_errors
from course_lib.grading.integrity import PACKAGE, snapshot
from course_lib.grading.output import OutputNotEmpty, write_output
from course_lib.grading.roster import RosterEntry, match_submission, parse_lms_name, read_roster
from course_lib.grading.discovery import Submission

TIMEOUT = 30
MEMORY = 1024
SEED = 11
CHAPTER = "02_softmax"
BROKEN_LINE = "    return softmax x  # a typo"
STUB = 'raise NotImplementedError("Exercise: write your code here, then run the check cell below.")'
ROSTER = """submission,lms_id,name
untouched,S-1,
syntax_*,S-2,
12345,S-3,
old_version,=HYPERLINK(1),
nobody_here,S-9,+Absent Student
"""


def _exercise_functions(nb) -> list[str]:
    """The functions with a solution region, in notebook order (softmax first in chapter 02)."""
    return [re.search(r"^def (\w+)", c.source, re.M)[1] for c in nb.cells
            if c.cell_type == "code" and fx.BEGIN in c.source]


def _code_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    cls, out = root / "class", root / "out"
    exercise = fx.exercise(CHAPTER)
    fx.write(exercise, cls / "untouched.ipynb")
    broken = fx.with_body(fx.solution(CHAPTER), "softmax", "return softmax x  # a typo")
    fx.write(broken, cls / "syntax_error.ipynb")
    multiplied = fx.with_body(fx.solution(CHAPTER), "softmax_with_temperature",
                              "return softmax(x * temperature, dim=-1)")
    fx.write(multiplied, cls / "multiplies_temperature.ipynb")
    partly = fx.solution(CHAPTER)
    for function in _exercise_functions(partly)[1:]:  # the first exercise done, the others still the stub
        partly = fx.with_body(partly, function, STUB)
    fx.write(partly, cls / "partly_done.ipynb")
    old = nbformat.from_dict(fx.solution(CHAPTER))
    old.metadata["course"] = {"generated_from": f"solutions/{CHAPTER}.ipynb", "version": "0123456789ab"}
    fx.write(old, cls / "old_version.ipynb")
    fx.write(fx.solution(CHAPTER), cls / f"doe_jane_12345_67890_{CHAPTER}.ipynb")  # a Canvas download name
    roster = root / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    solutions = root / "solutions"  # the one chapter: discovery captures only its checks
    solutions.mkdir()
    (solutions / f"{CHAPTER}.ipynb").write_bytes((fx.SOLUTIONS / f"{CHAPTER}.ipynb").read_bytes())
    rows = grade([cls], out, timeout=TIMEOUT, memory=MEMORY, jobs=2, seed=SEED, progress=False,
                 solutions=solutions, roster=roster)
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    return SimpleNamespace(root=root, out=out, cls=cls, rows={r.student: r for r in rows}, table=table,
                           csv={r["student"]: r for r in table}, header=header, broken=broken,
                           chapter=discover_chapters(solutions, SEED)[CHAPTER], exercise=exercise)


def _feedback(batch, student: str) -> str:
    return (batch.out / "feedback" / f"{student}.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# 1. A syntax error has its own status, says where it is, and blames no hidden function.
# --------------------------------------------------------------------------------------------


def test_a_syntax_error_is_its_own_status_with_cell_and_line(batch):
    cells = _code_cells(batch.broken)
    number = next(n for n, src in enumerate(cells, 1) if BROKEN_LINE in src.splitlines())
    line = cells[number - 1].splitlines().index(BROKEN_LINE) + 1
    row = batch.rows["syntax_error"]
    assert row.status == "syntax-error" and batch.csv["syntax_error"]["status"] == "syntax-error"
    where = f"syntax error in code cell {number} (counting code cells only), line {line}"
    assert row.reasons[0].startswith(where), row.reasons
    assert not any("not defined" in r for r in row.reasons)  # softmax is hidden by the error, not missing
    softmax = next(g for g in row.grades if g.name == "softmax")
    assert softmax.state == "syntax-error" and softmax.earned == 0
    section = _feedback(batch, "syntax_error").split("\n## ", 1)[1]
    first_text = [ln for ln in section.splitlines()[1:] if ln.strip()][0]
    assert first_text.startswith(f"**S{where[1:]}**"), first_text  # the first thing the student reads
    assert "softmax could not be graded" in first_text
    assert "softmax_with_temperature, soft_lookup call it and fail with NameError" in first_text  # why they fail
    text = _feedback(batch, "syntax_error")
    assert "define a function named `softmax`" not in text and "not found" not in text


# --------------------------------------------------------------------------------------------
# 2. The notebook as distributed is not-attempted, not "ok, 0".
# --------------------------------------------------------------------------------------------


def test_an_untouched_exercise_notebook_is_not_attempted(batch):
    row = batch.rows["untouched"]
    assert row.status == "not-attempted" and row.total == 0 and row.max_points > 0
    assert "exercise cells are as distributed" in row.reasons[0]
    assert batch.csv["untouched"]["status"] == "not-attempted"
    assert "Status: **not-attempted**" in _feedback(batch, "untouched")
    partly = batch.rows["partly_done"]  # one exercise written: attempted, graded as usual
    assert partly.status == "ok" and partly.total == points_for("softmax")
    assert [g.state for g in partly.grades] == ["graded"] + ["not-implemented"] * (len(partly.grades) - 1)
    assert len(partly.grades) >= 3


def test_syntax_errors_are_found_without_running_anything():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# not code"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("%%time\ny = (1,\n"),  # the magic line counts: the error is on line 2
        nbformat.v4.new_code_cell("def f():\nreturn 1"),
        nbformat.v4.new_code_cell("import os\nos._exit(3)"),  # valid: compiled, never run
    ])
    cells = [(i, python_source(c.source)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    found = syntax_errors(nb, cells)
    assert [(e.index, e.number, e.line) for e in found] == [(2, 2, 2), (3, 3, 2)]
    assert "IndentationError" in found[1].message
    assert found[0].where() == "syntax error in code cell 2 (counting code cells only), line 2"


# --------------------------------------------------------------------------------------------
# 3. The exercise version: stamped by build_exercises, compared by the grader.
# --------------------------------------------------------------------------------------------


def test_build_exercises_stamps_the_version_the_grader_computes(batch):
    stamped = batch.exercise.metadata["course"]["version"]
    assert re.fullmatch(r"[0-9a-f]{12}", stamped)
    assert stamped == batch.chapter.version == exercise_version(fx.solution(CHAPTER))
    assert batch.rows["untouched"].version == "current" and batch.csv["untouched"]["exercise_version"] == "current"


def test_the_version_follows_the_task_cells_and_checks_not_the_prose():
    solution = fx.solution(CHAPTER)
    base = exercise_version(solution)
    prose = nbformat.from_dict(solution)
    prose.cells.insert(0, nbformat.v4.new_markdown_cell("A new introduction."))
    better = fx.with_body(solution, "softmax", f"{fx.BEGIN}\nz = x - x.amax(dim=dim, keepdim=True).clamp_min(-1e30)\n"
                                               f"return z.exp() / z.exp().sum(dim=dim, keepdim=True)\n{fx.END}")
    assert exercise_version(prose) == exercise_version(better) == base  # prose and the solution code: same task
    signature = nbformat.from_dict(solution)
    for cell in signature.cells:
        cell.source = cell.source.replace("def softmax(x, dim=-1):", "def softmax(x, dim):")
    more_checks = fx.add_cell(solution, "check_softmax(softmax);\ncheck_dot(softmax);")
    assert len({base, exercise_version(signature), exercise_version(more_checks)}) == 3
    assert make_exercise(solution, f"{CHAPTER}.ipynb").metadata["course"]["version"] == base


def test_gradescope_output_shows_the_alerts_too(batch):
    from course_lib.grading.gradescope import results

    shown = results([batch.rows["old_version"], batch.rows["syntax_error"]])["output"]
    assert "another version of the exercise (0123456789ab" in shown
    assert "Syntax error in code cell" in shown and "**" not in shown


def test_an_old_version_is_flagged_in_the_feedback_and_the_csv(batch):
    row = batch.rows["old_version"]
    assert row.status == "ok" and row.total == row.max_points  # graded as usual, against the current checks
    assert batch.csv["old_version"]["exercise_version"] == "old 0123456789ab"
    text = _feedback(batch, "old_version")
    assert "another version of the exercise (0123456789ab" in text and batch.chapter.version in text
    assert batch.csv[f"doe_jane_12345_67890_{CHAPTER}"]["exercise_version"] == "unknown"  # no stamp


# --------------------------------------------------------------------------------------------
# 4. The output folder: a stale one is refused; --force replaces it as one unit.
# --------------------------------------------------------------------------------------------


def _invalid_class(root: Path) -> Path:
    """A class whose notebooks never reach a sandbox (invalid): grading it costs no worker."""
    cls = root / "cheap"
    cls.mkdir(parents=True)
    (cls / "zed.ipynb").write_text("not a notebook", encoding="utf-8")
    return cls


def test_a_folder_with_files_is_refused_without_force(tmp_path, capsys):
    cls, out = _invalid_class(tmp_path), tmp_path / "out"
    (out / "feedback").mkdir(parents=True)
    (out / "feedback" / "stale_student.md").write_text("old feedback", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main([str(cls), "--out", str(out), "--no-progress"])
    assert exit_.value.code == 2 and "--force" in capsys.readouterr().err
    with pytest.raises(OutputNotEmpty):
        grade([cls], out, progress=False)
    assert sorted(p.name for p in out.rglob("*")) == ["feedback", "stale_student.md"]  # untouched


def test_force_replaces_the_whole_folder(tmp_path):
    cls, out = _invalid_class(tmp_path), tmp_path / "out"
    (out / "feedback").mkdir(parents=True)
    (out / "feedback" / "stale_student.md").write_text("old feedback", encoding="utf-8")
    (out / "grades.csv").write_text("old grades\n", encoding="utf-8")
    assert main([str(cls), "--out", str(out), "--no-progress", "--force"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "feedback", "feedback/zed.md", "grades.csv", "run.json", "summary.md"]
    assert (out / "grades.csv").read_text(encoding="utf-8").startswith("student,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cheap", "out"]  # no temporary sibling left


def test_a_failed_write_leaves_the_old_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grades.csv").write_text("old grades\n", encoding="utf-8")

    def half_then_fail(folder: Path) -> None:
        (folder / "grades.csv").write_text("new grades\n", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_output(out, half_then_fail)
    assert (out / "grades.csv").read_text(encoding="utf-8") == "old grades\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------------------------
# 5. The roster: LMS ids, LMS download names, students who sent nothing.
# --------------------------------------------------------------------------------------------


def test_the_roster_fills_lms_ids_and_lists_who_sent_nothing(batch):
    lms = {s: r["lms_id"] for s, r in batch.csv.items()}
    assert lms["untouched"] == "S-1"  # the exact id
    assert lms["syntax_error"] == "S-2"  # a pattern
    assert lms[f"doe_jane_12345_67890_{CHAPTER}"] == "S-3"  # the Canvas user id in the file name
    assert lms["multiplies_temperature"] == ""  # not on the roster
    absent = batch.csv["'+Absent Student"]  # a text cell that starts a formula gets a quote
    assert absent["status"] == "no-submission" and absent["lms_id"] == "S-9" and absent["notebook"] == ""
    assert absent["total"] == absent["max"] == absent["percent"] == ""  # no 0 that an import would take
    assert lms["old_version"] == "'=HYPERLINK(1)"
    assert not list((batch.out / "feedback").glob("*Absent*"))


@pytest.mark.parametrize("name, expected", [
    ("doe_jane_12345_67890_02_softmax.ipynb", ("canvas", "doe_jane", "12345", "02_softmax.ipynb")),
    ("doejane_LATE_12345_67890_02_softmax-1.ipynb", ("canvas", "doejane", "12345", "02_softmax.ipynb")),
    ("Jane Doe_4711_assignsubmission_file_02_softmax.ipynb", ("moodle", "Jane Doe", "4711", "02_softmax.ipynb")),
    ("Jane Doe_4711_assignsubmission_file_", ("moodle", "Jane Doe", "4711", "")),
    ("Participant_4711_assignsubmission_file_", ("moodle", "Participant", "4711", "")),
    ("alice", None),
    ("02_softmax.ipynb", None),
])
def test_lms_download_names_are_read(name, expected):
    parsed = parse_lms_name(name)
    assert (parsed and (parsed.lms, parsed.name, parsed.user, parsed.filename)) == expected


def test_roster_matching_order_and_bad_rosters(tmp_path):
    entries = [RosterEntry("4711", "M-1", line=2), RosterEntry("ann*", "P-1", line=3), RosterEntry("anna", "E-1", line=4)]
    moodle = Submission("Jane Doe_4711_assignsubmission_file_", "class/Jane Doe_4711_assignsubmission_file_/x.ipynb", None)
    assert match_submission(entries, moodle).lms_id == "M-1"
    assert match_submission(entries, Submission("anna", "class/anna.ipynb", None)).lms_id == "E-1"  # exact first
    assert match_submission(entries, Submission("annabel", "class/annabel.ipynb", None)).lms_id == "P-1"
    assert match_submission(entries, Submission("bob", "class/bob.ipynb", None)) is None
    for text, message in [("id,lms\nx,1\n", "needs the columns"), ("submission,lms_id\nx,\n", "line 2"),
                          ("submission,lms_id\nx,1\nx,2\n", "already on line 2")]:
        (tmp_path / "r.csv").write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            read_roster(tmp_path / "r.csv")


def test_a_canvas_download_name_identifies_the_chapter(batch):
    chapters = {CHAPTER: batch.chapter}
    empty = nbformat.v4.new_notebook()
    assert identify_chapter(empty, f"doe_jane_12345_67890_{CHAPTER}-2.ipynb", [], chapters) == CHAPTER
    assert identify_chapter(empty, "doe_jane_12345_67890_notes.ipynb", [], chapters) is None


# --------------------------------------------------------------------------------------------
# 6. grades.csv: percent and per-exercise maxima; run.json.
# --------------------------------------------------------------------------------------------


def test_the_csv_carries_the_percent_and_the_maxima(batch):
    names = batch.chapter.names
    assert batch.header[:7] == ["student", "notebook", "chapter", "status", "reason", "lms_id", "exercise_version"]
    assert batch.header[7:] == [*names, "total", "max", "percent", *[f"max_{n}" for n in names]]
    for row in batch.table:
        if row["status"] == "no-submission":
            continue
        assert [float(row[f"max_{n}"]) for n in names] == [points_for(n) for n in names]
        total = sum(float(row[n]) for n in names)
        assert float(row["total"]) == pytest.approx(total, abs=0.011)
        assert float(row["max"]) == sum(points_for(n) for n in names)
        assert float(row["percent"]) == pytest.approx(100 * float(row["total"]) / float(row["max"]), abs=0.006)
    assert batch.csv["old_version"]["percent"] == "100.00" and batch.csv["untouched"]["percent"] == "0.00"


def test_run_json_records_how_the_grades_were_made(batch):
    record = json.loads((batch.out / "run.json").read_text(encoding="utf-8"))
    assert record["seed"] == SEED
    date = datetime.fromisoformat(record["date"].replace("Z", "+00:00"))
    assert date.utcoffset() == timedelta(0) and record["date"].endswith("Z")
    assert record["grader"]["package_sha256"] == snapshot(PACKAGE).digest
    assert record["grader"]["version"] and record["course"]["version"]
    commit = record["course"]["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    assert record["exercise_versions"] == {CHAPTER: batch.exercise.metadata["course"]["version"]}
    assert record["statuses"]["no-submission"] == 1 and record["notebooks"] == 6
    assert record["settings"]["timeout_s"] == TIMEOUT and record["settings"]["roster"] == "roster.csv"


# --------------------------------------------------------------------------------------------
# 7. summary.md: the class at a glance.
# --------------------------------------------------------------------------------------------


def test_the_summary_gives_mean_median_per_exercise_and_common_mistakes(batch):
    text = (batch.out / "summary.md").read_text(encoding="utf-8")
    rows = [r for r in batch.table if r["chapter"] == CHAPTER]
    totals = [float(r["total"]) for r in rows]
    most = float(rows[0]["max"])
    assert f"- Mean: {statistics.fmean(totals):.2f} / {most:.2f}" in text
    assert f"- Median: {statistics.median(totals):.2f} / {most:.2f}" in text
    assert "- Not attempted: 1\n" in text and "| no-submission | 1 |" in text
    for name in batch.chapter.names:
        average = statistics.fmean(float(r[name]) for r in rows)
        assert f"| {name} | {average:.2f} | {points_for(name):.2f} |" in text
    message = core.diagnosis_message(next(g.exercise for g in batch.chapter.exercises
                                          if g.exercise.name == "softmax_with_temperature"), "temperature_multiplied")
    assert f"| 1 | {CHAPTER} | softmax_with_temperature | temperature_multiplied | {message} |" in text
    for student in batch.rows:  # it names no student
        assert student not in text


# --------------------------------------------------------------------------------------------
# 8. Partial credit: a wrong formula that is right at T = 1 by coincidence earns nothing.
# --------------------------------------------------------------------------------------------


def test_multiplying_by_the_temperature_earns_no_points(batch):
    grade_ = next(g for g in batch.rows["multiplies_temperature"].grades if g.name == "softmax_with_temperature")
    assert grade_.report.diagnoses == ["temperature_multiplied"]
    assert grade_.report.passed == 0 and grade_.earned == 0
    others = [g for g in batch.rows["multiplies_temperature"].grades if g.name != "softmax_with_temperature"]
    assert others and all(g.earned == g.points for g in others)


@pytest.mark.parametrize("check, mistake", [
    ("check_softmax_with_temperature", "temperature_multiplied"),
    ("check_softmax_with_temperature", "temperature_after_softmax"),
    ("check_sampling_probs", "temperature_multiplied"),
])
def test_a_temperature_mistake_passes_no_property(check, mistake):
    """Every property holds a case with T != 1, so x * T (or softmax(x) / T) matches none of them."""
    with core.capture() as captured:
        getattr(checks, check)(lambda *a, **k: None, seed=3)
    exercise = captured[0].exercise
    wrong = next(m.fn for m in exercise.mistakes if m.key == mistake)
    report = core.judge(exercise, core.compute_outcomes(exercise, wrong))
    assert report.passed == 0 and mistake in report.diagnoses, [(r.title, r.passed) for r in report.results]


# --------------------------------------------------------------------------------------------
# 9. An exercise that no check grades is named on stderr and in run.json.
# --------------------------------------------------------------------------------------------


def test_the_grader_warns_about_exercises_no_check_grades(tmp_path, capsys):
    def region(name: str) -> str:
        return f"def {name}(u, v):\n    {fx.BEGIN}\n    return (u * v).sum()\n    {fx.END}"

    solution = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [
        region("dot"), "check_dot(dot);",  # graded: no warning
        region("forgotten"),  # no check at all
        "def check_mine(fn):\n    assert fn(1, 1) == 1", region("local"), "check_mine(local);",  # the notebook's own check
    ]])
    solutions = tmp_path / "solutions"
    fx.write(solution, solutions / "99_synthetic.ipynb")
    out = tmp_path / "out"
    assert main([str(_invalid_class(tmp_path)), "--out", str(out), "--no-progress", "--solutions", str(solutions)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("course-grade: warning: ")]
    assert len(warned) == 2, warned
    assert "99_synthetic.ipynb, cell 2: exercise `forgotten` has a solution region" in warned[0]
    assert "99_synthetic.ipynb, cell 5: `check_mine` is defined in the notebook itself" in warned[1]
    assert "so `local` get no points" in warned[1]
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert record["warnings"] == [w.removeprefix("course-grade: warning: ") for w in warned]
    chapter = discover_chapters(solutions, SEED)["99_synthetic"]
    assert chapter.names == ["dot"]  # what the grader grades: only the exercise a course check names
