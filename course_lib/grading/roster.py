"""``--roster``: map submissions to the LMS's student ids, and list the students who sent nothing.

The roster is a CSV file with a header row and the columns

- ``submission``: the submission id as the grader sees it (a notebook's file name without
  ``.ipynb``, or a student folder's name), or a pattern with ``*``, ``?`` or ``[...]`` (shell-style,
  case-sensitive, :func:`fnmatch.fnmatchcase`) matched against that id and the notebook's file
  name, or the student's number inside an LMS download name (see below);
- ``lms_id``: the student's id in the LMS (it goes to the ``lms_id`` column of grades.csv);
- ``name`` (optional): shown as the student of a ``no-submission`` row.

A submission takes the first roster row that matches, in this order: the exact id (or file
name); a pattern, in file order; the user number parsed from an LMS download name, compared with
the ``submission`` and then the ``lms_id`` column. A roster row that no submission took becomes a
row with status ``no-submission``.

LMS download names (:func:`parse_lms_name`):

- Canvas, "Download Submissions" of an assignment (a zip of the latest attempt of each student;
  Instructure Community guide "How do I download all student submissions for an assignment in
  SpeedGrader/the Gradebook", and canvas-lms's submission zipper): ``<name>_<user id>_<submission
  id>_<original file name>``, with ``LATE`` (or ``late``) after the name for a late submission,
  e.g. ``doe_jane_12345_67890_02_softmax.ipynb`` or ``doejane_LATE_12345_67890_02_softmax.ipynb``.
  A resubmitted file may carry ``-1``, ``-2`` ... before ``.ipynb``.
- Moodle, Assignment > "Download all submissions" (mod/assign/locallib.php,
  ``download_submissions``): ``<full name>_<participant id>_assignsubmission_file_<file name>``,
  or, with "Download submissions in folders" (the default since Moodle 3.1), a folder
  ``<full name>_<participant id>_assignsubmission_file_`` holding the file. Under blind marking the
  full name is "Participant". The participant id is the assignment's own number for the student
  (Moodle shows it in the grading table), not the Moodle user id.
"""

from __future__ import annotations

import csv
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A submission here is a course_lib.grading.discovery.Submission (student, notebook, lms_id); this
# module imports nothing of the grader, so that discovery can read LMS names without a circle.
Submission = Any


@dataclass(frozen=True)
class RosterEntry:
    """One roster row: the submission id or pattern, the LMS's id, an optional display name, its line."""

    submission: str
    lms_id: str
    name: str = ""
    line: int = 0

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.submission for ch in "*?[")


@dataclass(frozen=True)
class LmsName:
    """What an LMS download name says: which LMS, the student's name and number, the original file name."""

    lms: str  # "canvas" or "moodle"
    name: str
    user: str  # Canvas: the user id; Moodle: the participant id
    filename: str


_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<user>\d+)_assignsubmission_(?:file|onlinetext)_(?P<file>.*)$")
_CANVAS = re.compile(r"^(?P<name>.+?)_(?:(?:LATE|late)_)?(?P<user>\d+)_(?P<sub>\d+)_(?P<file>.+)$")


def parse_lms_name(name: str) -> LmsName | None:
    """Read a Canvas or Moodle download name (a file or folder name); None for any other name.

    Args:
        name: e.g. ``"doe_jane_12345_67890_02_softmax.ipynb"`` or
            ``"Jane Doe_4711_assignsubmission_file_"``.
    Returns:
        an :class:`LmsName` (``filename`` without a Canvas resubmission suffix ``-N``), or None.
    """
    match = _MOODLE.match(name)
    if match:
        return LmsName("moodle", match["name"], match["user"], match["file"])
    match = _CANVAS.match(name)
    if match:
        filename = re.sub(r"-\d+(\.ipynb)?$", r"\1", match["file"])
        return LmsName("canvas", match["name"], match["user"], filename)
    return None


def read_roster(path: Path) -> list[RosterEntry]:
    """The roster's rows (format in the module doc).

    Raises:
        ValueError: naming the file (and line) for a missing column, an empty cell, or a
            submission id listed twice.
    """
    text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's export may start with a BOM
    reader = csv.DictReader(text.splitlines())
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    missing = [c for c in ("submission", "lms_id") if c not in columns]
    if missing:
        raise ValueError(f"roster {path}: the header needs the columns submission and lms_id (missing: "
                         f"{', '.join(missing)}; found: {', '.join(reader.fieldnames or []) or 'nothing'})")
    entries: list[RosterEntry] = []
    seen: dict[str, int] = {}
    for line, record in enumerate(reader, 2):
        submission = (record.get(columns["submission"]) or "").strip()
        lms_id = (record.get(columns["lms_id"]) or "").strip()
        name = (record.get(columns["name"]) or "").strip() if "name" in columns else ""
        if not submission and not lms_id:
            continue  # a blank line
        if not submission or not lms_id:
            raise ValueError(f"roster {path}, line {line}: both submission and lms_id are needed")
        if submission in seen:
            raise ValueError(f"roster {path}, line {line}: submission {submission!r} is already on line {seen[submission]}")
        seen[submission] = line
        entries.append(RosterEntry(submission, lms_id, name, line))
    return entries


def _names(sub: Submission) -> list[str]:
    """The names a roster row may match: the submission id, the notebook's file name and its stem."""
    file = re.sub(r" \(\d+\)$", "", sub.notebook).rstrip("/").rsplit("/", 1)[-1]  # " (2)": a second SUB folder
    return list(dict.fromkeys([sub.student, file, file.removesuffix(".ipynb")]))


def match_submission(entries: list[RosterEntry], sub: Submission) -> RosterEntry | None:
    """The roster row of a submission (order of preference in the module doc), or None."""
    names = _names(sub)
    for entry in entries:
        if not entry.is_pattern and entry.submission in names:
            return entry
    for entry in entries:
        if entry.is_pattern and any(fnmatch.fnmatchcase(n, entry.submission) for n in names):
            return entry
    parsed = next((p for p in map(parse_lms_name, names) if p is not None), None)
    if parsed is not None:
        for column in ("submission", "lms_id"):
            for entry in entries:
                if getattr(entry, column) == parsed.user:
                    return entry
    return None


def apply_roster(entries: list[RosterEntry], subs: list[Submission]) -> list[RosterEntry]:
    """Set each submission's ``lms_id``; return the roster rows no submission took, in file order."""
    taken: set[int] = set()
    for sub in subs:
        entry = match_submission(entries, sub)
        if entry is not None:
            sub.lms_id = entry.lms_id
            taken.add(entry.line)
    return [e for e in entries if e.line not in taken]


def absent_student(entry: RosterEntry) -> str:
    """The id shown for a roster student without a submission: the name, else the id, else the LMS id."""
    return entry.name or (entry.submission if not entry.is_pattern else entry.lms_id)
