"""Writing the gradebook (grades.csv) and one feedback file per student.

grades.csv layout (UTF-8, comma-separated, one header row, then one row per notebook sorted by
student and notebook; import it as is, or pick the columns your LMS wants):

=====================  ===========================================================================
column                 content
=====================  ===========================================================================
student                the submission id (file or folder name)
notebook               the notebook's path from the SUB folder's parent ("" for no-submission)
chapter                the chapter graded, e.g. 02_softmax ("" if not identified)
status                 ok, not-attempted, syntax-error, missing-function, ... (README, "Grading")
reason                 why the status is not ok, "; "-separated
lms_id                 the student's LMS id from ``--roster`` ("" without a roster or a match)
exercise_version       current, "old <stamp>" (made from another version of the exercise), unknown
<exercise>             points earned per exercise, two decimals ("" if not in the row's chapter);
                       ``<chapter>:<exercise>`` when two chapters share an exercise name
total, max             points earned and available in the notebook ("" for no-submission)
percent                100 * total / max, two decimals ("" when max is 0)
max_<exercise>         the points available per exercise, in the same order as the exercise columns
                       ("" if not in the row's chapter)
=====================  ===========================================================================

Numbers are plain decimals with a dot; every text cell goes through :func:`_cell` (no formula).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path


from ..checks import core

from .discovery import Chapter
from .scoring import ExerciseGrade, Row


# --------------------------------------------------------------------------------------------
# Output files.
# --------------------------------------------------------------------------------------------


def _columns(rows: list[Row], chapters: dict[str, Chapter]) -> list[tuple[str, str, str]]:
    """(header, chapter, exercise) for every exercise of the chapters present, in chapter order."""
    present = sorted({r.chapter for r in rows if r.chapter and r.chapter in chapters})
    pairs = [(c, name) for c in present for name in chapters[c].names]
    counts: dict[str, int] = {}
    for _, name in pairs:
        counts[name] = counts.get(name, 0) + 1
    return [((f"{c}:{name}" if counts[name] > 1 else name), c, name) for c, name in pairs]


HEADER = ["student", "notebook", "chapter", "status", "reason", "lms_id", "exercise_version"]


def write_grades(rows: list[Row], chapters: dict[str, Chapter], path: Path) -> None:
    """grades.csv (layout in the module doc): fixed two-decimal points, sorted by student and notebook."""
    columns = _columns(rows, chapters)
    maxima = {(c.name, g.exercise.name): g.points for c in chapters.values() for g in c.exercises}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*map(_cell, HEADER), *[_cell(h) for h, _, _ in columns], "total", "max", "percent",
                     *[_cell(f"max_{h}") for h, _, _ in columns]])
    for row in rows:
        earned = {(row.chapter, g.name): g.earned for g in row.grades}
        cells = [f"{earned[(c, n)]:.2f}" if (c, n) in earned else "" for _, c, n in columns]
        most = [f"{maxima[(c, n)]:.2f}" if c == row.chapter and (c, n) in maxima else "" for _, c, n in columns]
        text = [row.student, row.notebook, row.chapter, row.status, "; ".join(row.reasons), row.lms_id, row.version]
        if row.status == "no-submission":
            totals = ["", "", ""]
        else:
            totals = [f"{row.total:.2f}", f"{row.max_points:.2f}",
                      "" if row.percent is None else f"{row.percent:.2f}"]
        writer.writerow([*map(_cell, text), *cells, *totals, *most])
    path.write_text(buffer.getvalue(), encoding="utf-8")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run: a leading ``'`` before ``= + - @``, tab or CR (OWASP CSV injection).

    Only text cells go through here; the points are numbers the grader formats (never negative).
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _safe_filename(student: str) -> str:
    """The file stem for a student id: only ``[A-Za-z0-9._-]``, no leading dot, at most 80 characters.

    An id that loses anything on the way (or is a reserved device name on Windows) gets ``-`` and
    8 hex digits of its sha256, so ``a b`` and ``a_b`` never share a file.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", student).lstrip(".")[:80]
    if name != student or not name or name.split(".")[0].lower() in _RESERVED:
        name = f"{name or 'student'}-{_short_hash(student)}"
    return name


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def feedback_names(students: list[str]) -> dict[str, str]:
    """{student id: feedback file name}: safe names, distinct even on a case-insensitive filesystem."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for student in sorted(set(students)):
        name = _safe_filename(student)
        salt = 0
        while name.lower() in taken:  # e.g. "Ann" and "ann" on macOS, or an id that mimics a hashed name
            salt += 1
            name = f"{_safe_filename(student)}-{_short_hash(f'{salt}:{student}')}"
        taken.add(name.lower())
        names[student] = f"{name}.md"
    return names


def exercise_lines(g: ExerciseGrade) -> list[str]:
    """The feedback on one exercise: each property passed or failed, with the reason, and the diagnosis."""
    report = g.report
    if g.state != "graded" or report is None:
        return [g.note or g.state]
    out = [f"{report.passed} of {report.total} properties passed.", ""]
    for r in report.results:
        out.append(f"- [{'pass' if r.passed else 'FAIL'}] {r.title}")
        if not r.passed and r.detail:
            out.append(f"  - {r.detail}")
    for key in report.diagnoses:
        out.append(f"- Diagnosis: {core.diagnosis_message(g.exercise, key)}")
    if report.status == "failed" and not report.diagnoses and any(
        not r.passed and not r.title.startswith(core.HAND_WRITTEN) for r in report.results
    ):
        out.append("- No known mistake matches; compare your steps with the lesson, one shape at a time.")
    return out


def feedback_text(student: str, rows: list[Row]) -> str:
    """The Markdown feedback for one student: every notebook, every exercise, every property."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in student)
    out = [f"# Feedback for {shown}", ""]
    for row in rows:
        title = row.chapter or "unknown chapter"
        out += [f"## {title} ({row.notebook})", ""]
        for alert in row.alerts:
            out += [alert, ""]
        out.append(f"Status: **{row.status}**" + (f": {'; '.join(row.reasons)}" if row.reasons else "") + ".")
        if row.grades:
            out.append(f"Score: **{row.total:.2f} / {row.max_points:.2f}**.")
        out.append("")
        for g in row.grades:
            out.append(f"### {g.name}: {g.earned:.2f} / {g.points:.2f}")
            out.append("")
            out += exercise_lines(g)
            out.append("")
        if row.notes:
            out += ["### Notes", ""] + [f"- {n}" for n in row.notes] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_feedback(rows: list[Row], folder: Path) -> None:
    """feedback/<student>.md for every student (one file, a section per notebook)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[Row]] = {}
    for row in rows:
        if row.status == "no-submission":  # nothing to say to a student who sent nothing
            continue
        by_student.setdefault(row.student, []).append(row)
    names = feedback_names(list(by_student))
    for student in sorted(by_student):
        path = folder / names[student]
        if path.parent != folder:  # cannot happen (no separator survives _safe_filename); never write outside
            raise ValueError(f"feedback file name {names[student]!r} leaves {folder}")
        path.write_text(feedback_text(student, by_student[student]), encoding="utf-8")
