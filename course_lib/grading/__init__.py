"""``course-grade``: grade a class's exercise notebooks in batch, safely.

The package, by job: :mod:`.discovery` (chapters, exercises, submissions), :mod:`.sandbox` (the
worker processes and the fork server), :mod:`.worker` (the code that runs inside the confined
process), :mod:`.scoring` (results -> rows, judged here), :mod:`.report` (grades.csv, feedback)
and :mod:`.cli` (the command line and :func:`grade`).

Usage::

    course-grade SUB... --out DIR [--timeout S] [--memory MB] [--jobs N] [--seed N] [--device cpu|cuda]
                 [--roster FILE] [--force] [--layout auto|folders|nbgrader] [--lms canvas]
    make grade SUBMISSIONS=dir [OUT=grades]

``SUB`` is a notebook (the student id is its file name without ``.ipynb``) or a folder. In a
folder, each notebook is one student's submission (id: file name), and each sub-folder is one
student (id: folder name) holding one or more notebooks, one per chapter: every notebook gets
its own row, with a ``notebook`` column (its path from the SUB folder's parent) and a
``chapter`` column. Hidden files and folders (``.ipynb_checkpoints``) are skipped. nbgrader's layouts are read as they are (:mod:`.layouts`):
a course directory's ``submitted/<student>/<assignment>/``, and an exchange's
``inbound/<student>+<assignment>+<timestamp>/`` (the latest of each student and assignment).
``--lms canvas`` also writes ``canvas.csv``, Canvas's gradebook import (:mod:`.lms`).

For each notebook the grader

1. reads and validates it with nbformat (else status ``invalid-notebook``) and identifies its
   chapter: from the metadata that ``make exercises`` writes (``course.generated_from``), else
   from the file name, else from the exercise functions it defines;
2. collects the chapter's exercises from the check calls in ``solutions/NN_topic.ipynb``
   (``check_<name>(...)``) and the check functions themselves, run under
   :func:`course_lib.checks.core.capture` with the instructor's ``--seed``: a new chapter
   needs no change here;
3. runs the notebook's code in a separate process, :mod:`course_lib.grading.worker`, in a fresh
   temporary directory, with a minimal environment, stdin closed, output capped, a wall-clock
   timeout (the whole process group is killed), CPU-time, memory and file-size limits, and an
   audit hook that refuses access to the grader's files; the worker calls each exercise
   function on the grader's inputs and writes back plain data. The processes are forked by
   a fork server that imported torch once (:class:`ForkServer`), or started afresh when it is
   unavailable: the same job, the same files;
4. judges those results in this process (:func:`course_lib.checks.core.judge`), so nothing
   the submission patches in its own process can change a score, adds the "written by hand"
   property where the exercise forbids a ready-made function (read from the cell source),
   and scores each exercise: points (``course_lib/checks/points.py``) times properties
   passed over properties.

Output: ``DIR/grades.csv`` (one row per notebook; layout in :mod:`.report`: student, notebook,
chapter, status, reason, lms_id, exercise_version, one column per exercise, total, max, percent,
max_<exercise>), ``DIR/feedback/<student>.md`` (per exercise: each property passed or failed
with the reason, shapes and dtypes only, and the diagnosis; never the reference code or the
hidden inputs), ``DIR/summary.md`` (the class at a glance, :mod:`.summary`) and ``DIR/run.json``
(date, seed, versions, settings). A DIR that holds files is refused without ``--force``, and
replaced as one unit with it (:mod:`.output`); ``--roster`` maps submissions to LMS ids
(:mod:`.roster`). Statuses: ``ok``, ``not-attempted`` (every exercise still the stub),
``syntax-error`` (a cell Python cannot read: code cell and line in the reason),
``no-submission`` (a roster student without a notebook), ``timeout``, ``memory``, ``crash``,
``invalid-notebook``, ``missing-function``, ``sandbox-violation`` (the code tried something the
sandbox refused: every exercise scores zero, and the reason says what it tried, e.g.
"sandbox-violation: tried to open <solutions>/03_scaling.ipynb for reading") and ``grader-error`` (a bug of the grader on that
notebook; the rest of the batch is graded). The same inputs and seed give the same files, byte
for byte, but for run.json's date. Exit status: 0 when every notebook got a row, 2 for bad command-line input, 3 when
the ``course_lib`` package changed on disk during the batch (its sha256 is taken before and
after; the rows are still written, and the changed files are named on stderr and in a last
``grades.csv`` row).

Text cells of ``grades.csv`` that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) get a leading ``'``; feedback file names keep
only ``[A-Za-z0-9._-]`` of the student id, plus a short hash of the id when anything was dropped
or two ids would share a file.

``--format gradescope`` writes Gradescope's ``results.json`` for one submission folder instead
(:mod:`.gradescope`); ``make gradescope`` builds the autograder zip.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and readers; at run time the names load on first use (below)
    from .cli import grade, main
    from .discovery import Chapter, GradedExercise, Submission, discover_chapters, find_submissions, python_source
    from .report import feedback_text, write_feedback, write_grades
    from .sandbox import ForkServer, Settings, _decode_outcomes, _load_results  # noqa: F401  (tests use the private two)
    from .scoring import ExerciseGrade, Row, grade_exercise, grade_submission

# Where each public name lives. They are imported on first use (PEP 562), not with the package:
# the grading worker (``python -m course_lib.grading.worker``) imports this package first, and it
# needs neither nbformat nor the command line. nbformat brings jsonschema, whose optional IRI
# checker (rfc3987_syntax) builds its Lark parsers at import: about 2 s of CPU in every fork server.
_HOME = {
    "grade": "cli", "main": "cli",
    "Chapter": "discovery", "GradedExercise": "discovery", "Submission": "discovery",
    "discover_chapters": "discovery", "find_submissions": "discovery", "python_source": "discovery",
    "feedback_text": "report", "write_feedback": "report", "write_grades": "report",
    "ForkServer": "sandbox", "Settings": "sandbox", "_decode_outcomes": "sandbox", "_load_results": "sandbox",
    "ExerciseGrade": "scoring", "Row": "scoring", "grade_exercise": "scoring", "grade_submission": "scoring",
}


def _submodules() -> set[str]:
    """The package's modules (cli, scoring, ...), bound as attributes on first use as the names are."""
    return {info.name for info in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    if name in _submodules():
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME) | _submodules())


__all__ = [
    "grade",
    "main",
    "Chapter",
    "GradedExercise",
    "Submission",
    "discover_chapters",
    "find_submissions",
    "python_source",
    "feedback_text",
    "write_feedback",
    "write_grades",
    "ForkServer",
    "Settings",
    "ExerciseGrade",
    "Row",
    "grade_exercise",
    "grade_submission",
]
