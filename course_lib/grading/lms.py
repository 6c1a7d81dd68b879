"""``--lms canvas``: a gradebook that Canvas imports as it is (``canvas.csv``, next to grades.csv).

The format is Canvas's gradebook CSV, the one its Gradebook exports and re-imports (Instructure
Community, Canvas Instructor Guide: "How do I import grades in the Gradebook?",
https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807,
and "How do I export grades in the Gradebook?"):

- the header: ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column
  per assignment. Canvas finds each student by ``ID`` (the Canvas user id) or by the SIS ids, and
  each assignment by the id in ``<name> (<assignment id>)``; a column with a plain name is matched
  by name, or Canvas offers to create the assignment (the import shows every change for review
  before anything is saved);
- a second row whose ``Student`` is ``Points Possible``, with each assignment's points (Canvas
  reads it for a new assignment);
- then one row per student.

What the grader writes: an assignment column per chapter graded (``02_softmax``: give the Canvas
assignment that name, or rename the header to ``<name> (<id>)``), its points possible = the
chapter's points (``course_lib/checks/points.py``), and one row per student: ``Student`` = the
submission id (a roster student without a submission: the roster's name), ``ID`` = the roster's
``lms_id`` (the Canvas user id; empty without ``--roster``, and then Canvas cannot match the row:
grade with ``--roster``). The submissions of one LMS id (a Canvas download of one file per chapter
gives one submission id per file) make one row. A cell is the notebook's total, two decimals; when
a student has several notebooks of one chapter, the best total. A cell is left empty (no score
rather than 0) for a chapter the student did not send and for a ``grader-error`` (a bug of the
grader is no zero). The SIS columns and ``Section`` stay empty: Canvas does not need
them when ``ID`` is given. Every text cell goes through :func:`.report._cell` (no formula).

Why Canvas and not Moodle: Canvas's import is keyed by the user id that its own submission
download puts in each file name (:mod:`.roster` reads it), so a class downloaded from Canvas and
graded with ``--roster`` imports without editing; the layout is the one Canvas writes itself.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .discovery import Chapter
from .report import _cell
from .scoring import Row

LMS_CHOICES = ("canvas",)
HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "Points Possible"
FILENAMES = {"canvas": "canvas.csv"}


def canvas_rows(rows: list[Row], chapters: dict[str, Chapter]) -> list[list[str]]:
    """The cells of canvas.csv, header first (layout in the module doc)."""
    present = sorted({r.chapter for r in rows if r.chapter in chapters})
    students: dict[str, dict] = {}  # key: the LMS id, else the submission id
    for row in rows:
        if row.student == "<grader>":  # the integrity alarm is no student
            continue
        key = f"lms:{row.lms_id}" if row.lms_id else f"id:{row.student}"
        entry = students.setdefault(key, {"student": row.student, "id": row.lms_id, "points": {}})
        entry["student"] = min(entry["student"], row.student)
        if row.status in ("no-submission", "grader-error") or row.chapter not in chapters:
            continue
        best = entry["points"].get(row.chapter)
        entry["points"][row.chapter] = row.total if best is None else max(best, row.total)
    table = [[*HEADER, *present],
             [POINTS_POSSIBLE, "", "", "", "", *[f"{chapters[c].max_points:.2f}" for c in present]]]
    for entry in sorted(students.values(), key=lambda e: (e["student"], e["id"])):
        points = [f"{entry['points'][c]:.2f}" if c in entry["points"] else "" for c in present]
        table.append([entry["student"], entry["id"], "", "", "", *points])
    return [[_cell(cell) for cell in line] for line in table]


def write_lms(lms: str, rows: list[Row], chapters: dict[str, Chapter], folder: Path) -> Path:
    """Write the gradebook for ``lms`` into ``folder``; return its path.

    Raises:
        ValueError: for an ``lms`` not in :data:`LMS_CHOICES`.
    """
    if lms not in LMS_CHOICES:
        raise ValueError(f"lms must be one of {LMS_CHOICES}, got {lms!r}")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(canvas_rows(rows, chapters))
    path = folder / FILENAMES[lms]
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path
