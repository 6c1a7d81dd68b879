"""Writing the gradebook (grades.csv) and one feedback file per student."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path


from ..checks import core

from .discovery import Chapter
from .scoring import Row


# --------------------------------------------------------------------------------------------
# Output files.
# --------------------------------------------------------------------------------------------


def _columns(rows: list[Row], chapters: dict[str, Chapter]) -> list[tuple[str, str, str]]:
    """(header, chapter, exercise) for every exercise of the chapters present, in chapter order."""
    present = sorted({r.chapter for r in rows if r.chapter})
    pairs = [(c, name) for c in present for name in chapters[c].names]
    counts: dict[str, int] = {}
    for _, name in pairs:
        counts[name] = counts.get(name, 0) + 1
    return [((f"{c}:{name}" if counts[name] > 1 else name), c, name) for c, name in pairs]


def write_grades(rows: list[Row], chapters: dict[str, Chapter], path: Path) -> None:
    """grades.csv: one row per notebook, fixed two-decimal points, sorted by student and notebook."""
    columns = _columns(rows, chapters)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "notebook", "chapter", "status", "reason", *[h for h, _, _ in columns], "total", "max"])
    for row in rows:
        earned = {(row.chapter, g.name): g.earned for g in row.grades}
        cells = [f"{earned[(c, n)]:.2f}" if (c, n) in earned else "" for _, c, n in columns]
        writer.writerow([row.student, row.notebook, row.chapter, row.status, "; ".join(row.reasons), *cells,
                         f"{row.total:.2f}", f"{row.max_points:.2f}"])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _safe_filename(student: str) -> str:
    name = re.sub(r"[^\w.@+-]", "_", student).lstrip(".")
    return name or "_"


def feedback_text(student: str, rows: list[Row]) -> str:
    """The Markdown feedback for one student: every notebook, every exercise, every property."""
    out = [f"# Feedback for {student}", ""]
    for row in rows:
        title = row.chapter or "unknown chapter"
        out += [f"## {title} ({row.notebook})", ""]
        out.append(f"Status: **{row.status}**" + (f": {'; '.join(row.reasons)}" if row.reasons else "") + ".")
        if row.grades:
            out.append(f"Score: **{row.total:.2f} / {row.max_points:.2f}**.")
        out.append("")
        for g in row.grades:
            out.append(f"### {g.name}: {g.earned:.2f} / {g.points:.2f}")
            out.append("")
            report = g.report
            if g.state != "graded" or report is None:
                out += [g.note or g.state, ""]
                continue
            out.append(f"{report.passed} of {report.total} properties passed.")
            out.append("")
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
            out.append("")
        if row.notes:
            out += ["### Notes", ""] + [f"- {n}" for n in row.notes] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_feedback(rows: list[Row], folder: Path) -> None:
    """feedback/<student>.md for every student (one file, a section per notebook)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[Row]] = {}
    for row in rows:
        by_student.setdefault(row.student, []).append(row)
    used: dict[str, str] = {}
    for student in sorted(by_student):
        name = _safe_filename(student)
        while name in used and used[name] != student:
            name = "_" + name
        used[name] = student
        (folder / f"{name}.md").write_text(feedback_text(student, by_student[student]), encoding="utf-8")
