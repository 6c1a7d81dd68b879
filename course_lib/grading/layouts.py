"""nbgrader's folder layouts, so that a course that collects with nbgrader grades with ``course-grade`` as it is.

Two layouts are read (nbgrader's documentation, "Managing assignment files" and "Exchange API";
nbgrader's source, ``nbgrader/coursedir.py`` and ``nbgrader/exchange/default/{submit,collect}.py``):

- **The course directory's ``submitted`` folder**, where ``nbgrader collect`` (or the formgrader)
  puts the work: ``CourseDirectory.directory_structure`` is ``{nbgrader_step}/{student_id}/{assignment_id}``
  with ``submitted_directory = "submitted"``, so a notebook is
  ``submitted/<student>/<assignment>/<notebook>.ipynb`` (nbgrader also writes ``timestamp.txt``
  there; it is no notebook and is skipped). The student id is the ``<student>`` folder.
- **The exchange's inbound folder**, where ``nbgrader submit`` copies a student's work before any
  collect: ``<exchange root>/<course>/inbound/<student>+<assignment>+<timestamp>[+<random>]/``
  (``ExchangeSubmit.init_dest``; the random part is on by default, ``add_random_string``; the
  timestamp is written with ``Exchange.timestamp_format``, ``%Y-%m-%d %H:%M:%S.%f %Z``, in UTC by
  default). As ``nbgrader collect`` does (``ExchangeCollect.init_src``), only the latest
  submission of each student and assignment is graded; the student id is ``<student>``.

Which layout a SUB folder has (``--layout``, :func:`resolve_layout`): ``auto`` (the default) reads
it as nbgrader's when the folder is named ``submitted`` or ``inbound``, or holds a folder of that
name (the course directory, or an exchange's course folder: then only that folder is graded, never
``source/``, ``release/`` or ``autograded/``); ``nbgrader`` insists on it (an error otherwise);
``folders`` never reads it (a student who is really called "submitted").

This module reads names only; :func:`course_lib.grading.discovery.find_submissions` builds the rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

LAYOUTS = ("auto", "folders", "nbgrader")
SUBMITTED, INBOUND = "submitted", "inbound"


@dataclass(frozen=True)
class InboundName:
    """What an inbound folder's name says: student, assignment, the timestamp as written, and when (UTC)."""

    student: str
    assignment: str
    timestamp: str
    when: datetime


# <student>+<assignment>+<timestamp>[+<random>]: the timestamp starts with a date; the random part is
# URL-safe base64 (no "+"), so a "+" in the student id (nbgrader refuses one on the command line,
# but a login name may hold it) stays in the student id.
_INBOUND = re.compile(r"^(?P<student>.+)\+(?P<assignment>[^+]+)\+(?P<timestamp>\d{4}-\d\d-\d\d[ T][^+]*?)"
                      r"(?:\+[A-Za-z0-9_=-]+)?$")
_WHEN = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d(?:\.\d{1,6})?)\s*(\S*)$")


def parse_inbound_name(name: str) -> InboundName | None:
    """Read ``<student>+<assignment>+<timestamp>[+<random>]``; None for any other name.

    Args:
        name: an inbound folder's name, e.g. ``"alice+ps1+2026-01-02 10:00:00.000000 UTC+Ab3-_x9Yz0Q1"``.
    Returns:
        an :class:`InboundName`; ``when`` is the timestamp in UTC (a zone other than UTC/GMT/Z, or
        none, is taken as UTC: nbgrader writes UTC unless ``Exchange.timezone`` is changed).
    """
    match = _INBOUND.match(name)
    if not match:
        return None
    when = _WHEN.match(match["timestamp"].strip())
    if not when:
        return None
    try:
        moment = datetime.fromisoformat(f"{when[1]}T{when[2]}").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return InboundName(match["student"], match["assignment"], match["timestamp"], moment)


def resolve_layout(folder: Path, layout: str = "auto") -> tuple[str, Path] | None:
    """Which nbgrader folder a SUB folder is, if any: ``("submitted" | "inbound", the folder to read)``.

    Args:
        folder: a SUB folder given to the grader.
        layout: "auto", "folders" or "nbgrader" (see the module doc).
    Returns:
        the kind and the folder to read, or None to read ``folder`` as plain folders.
    Raises:
        ValueError: for an unknown ``layout``; for "nbgrader" when ``folder`` is neither
            ``submitted/`` nor ``inbound/`` and holds neither.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "folders" or not folder.is_dir():
        return None
    for kind in (SUBMITTED, INBOUND):
        if folder.name == kind:
            return kind, folder
        inside = folder / kind
        if inside.is_dir() and not inside.is_symlink():
            return kind, inside
    if layout == "nbgrader":
        raise ValueError(f"{folder} is not an nbgrader folder: it is not named submitted/ or inbound/ and "
                         "holds neither (give the course directory, its submitted/ folder, or the exchange's "
                         "<course>/inbound/ folder)")
    return None


def latest_inbound(folder: Path) -> tuple[list[tuple[str, Path]], list[Path]]:
    """The inbound submissions to grade: the latest of each student and assignment, as ``nbgrader collect``.

    Returns:
        ``[(student, submission folder)]`` sorted by student then folder name, and the entries whose
        name is not an inbound name (hidden entries and plain files are skipped).
    """
    latest: dict[tuple[str, str], tuple[datetime, str, Path]] = {}
    strays: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or (entry.is_file() and not entry.is_symlink()):
            continue
        parsed = parse_inbound_name(entry.name)
        if parsed is None:
            strays.append(entry)
            continue
        key = (parsed.student, parsed.assignment)
        if key not in latest or (parsed.when, entry.name) > latest[key][:2]:
            latest[key] = (parsed.when, entry.name, entry)
    chosen = sorted(((s, path) for (s, _), (_, _, path) in latest.items()), key=lambda sp: (sp[0], sp[1].name))
    return chosen, strays
