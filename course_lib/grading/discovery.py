"""Finding the work: each chapter's exercises (from solutions/ and course_lib.checks), the submitted notebooks, and which chapter a notebook is."""

from __future__ import annotations

import ast
import inspect
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..authoring.build_exercises import exercise_version, task_cells, ungraded_exercises
from ..checks import core
from ..checks.points import points_for
from .layouts import INBOUND, latest_inbound, resolve_layout
from .roster import parse_lms_name



# --------------------------------------------------------------------------------------------
# Chapters and their exercises, discovered from solutions/ and course_lib.checks.
# --------------------------------------------------------------------------------------------


@dataclass
class GradedExercise:
    """One exercise as the grader sees it: the captured Exercise and how to call the learner's function."""

    exercise: core.Exercise
    check: str  # the check function's name, when it wraps the learner's function (else "")
    points: float


@dataclass
class Chapter:
    """A chapter: its solution notebook's stem (e.g. "02_softmax") and its exercises, in order."""

    name: str
    exercises: list[GradedExercise] = field(default_factory=list)
    error: str = ""  # why the chapter cannot be graded (a broken check), else ""
    job_inputs: Any = None  # the cases of every exercise, as sent to the worker
    trusted_pickle: bool = False  # the cases need full pickle (not weights_only) to travel
    version: str = ""  # the exercise's version, as build_exercises stamps it (course.version)
    task_cells: list[str] = field(default_factory=list)  # the task cells as distributed (stubs in place)
    warnings: list[str] = field(default_factory=list)  # exercises no check of course_lib.checks grades

    @property
    def names(self) -> list[str]:
        return [g.exercise.name for g in self.exercises]

    @property
    def max_points(self) -> float:
        return sum(g.points for g in self.exercises)


_CHECK_CALL = re.compile(r"\bcheck_(\w+)\s*\(")


def _placeholder(*args, **kwargs):
    raise NotImplementedError("the grader's placeholder is never called")


def discover_chapters(solutions: Path, seed: int) -> dict[str, Chapter]:
    """Every chapter with a solution notebook, with its exercises captured at ``seed``.

    Args:
        solutions: the folder of solution notebooks (``NN_topic.ipynb``).
        seed: the instructor's seed, passed to every check function.
    Returns:
        chapters by name (the notebook's stem), sorted. A chapter whose checks fail to load
        has ``error`` set (its notebooks get status grader-error) instead of stopping the run;
        ``warnings`` lists the exercises that no check of course_lib.checks grades
        (:func:`course_lib.authoring.build_exercises.ungraded_exercises`).
    """
    import nbformat

    from .. import checks

    chapters: dict[str, Chapter] = {}
    for path in sorted(solutions.glob("*.ipynb")):
        chapter = Chapter(path.stem)
        chapters[path.stem] = chapter
        try:
            nb = nbformat.read(path, as_version=4)
            chapter.version, chapter.task_cells = exercise_version(nb, path.name), task_cells(nb, path.name)
            chapter.warnings = ungraded_exercises(nb, path.name)
            names: list[str] = []
            for cell in nb.cells:
                if cell.cell_type == "code":
                    names += [n for n in _CHECK_CALL.findall(cell.source) if n not in names]
            for name in names:
                check = getattr(checks, f"check_{name}", None)
                if not callable(check):  # e.g. a check defined in the notebook: chapter.warnings says so
                    continue
                takes_seed = "seed" in inspect.signature(check).parameters
                with core.capture() as captured:
                    check(_placeholder, seed=seed) if takes_seed else check(_placeholder)
                for record in captured:
                    if record.exercise.name in chapter.names:
                        continue
                    wrapped = "" if record.fn is _placeholder else f"check_{name}"
                    chapter.exercises.append(GradedExercise(record.exercise, wrapped, points_for(record.exercise.name)))
            chapter.job_inputs, chapter.trusted_pickle = _encode_inputs(chapter, seed)
        except Exception as exc:  # noqa: BLE001  one broken chapter must not stop the others
            chapter.error = f"the checks of {path.name} could not be loaded: {type(exc).__name__}: {_one_line(exc)}"
    return chapters


def _encode_inputs(chapter: Chapter, seed: int) -> tuple[list[dict], bool]:
    """The exercises' cases as plain data for the worker; whether they need full pickle."""
    inputs = [
        {"name": g.exercise.name, "check": g.check, "seed": seed,
         "cases": [[(tuple(c.args), dict(c.kwargs)) for c in prop.cases] for prop in g.exercise.properties]}
        for g in chapter.exercises
    ]
    buffer = io.BytesIO()
    torch.save(inputs, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
        return inputs, False
    except Exception:  # noqa: BLE001  e.g. a case holding an nn.Module: written by us, read before any submitted code
        return inputs, True


# --------------------------------------------------------------------------------------------
# Submissions.
# --------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """One notebook to grade (or a student folder without any, ``path`` None)."""

    student: str
    notebook: str  # shown in the CSV: the path from the SUB folder's parent
    path: Path | None
    problem: str = ""  # why it cannot be graded (no notebook, a symlink), else ""
    lms_id: str = ""  # the student's LMS id, from the roster


def find_submissions(paths: list[Path], exclude: list[Path], layout: str = "auto") -> list[Submission]:
    """The submissions under the SUB arguments (see the module doc), in a stable order.

    ``layout`` says how a SUB folder is read: "folders", "nbgrader" or "auto" (nbgrader's
    ``submitted/`` or exchange ``inbound/`` layout when the folder is or holds one:
    :mod:`.layouts`).

    Raises:
        ValueError: as :func:`.layouts.resolve_layout` (an unknown layout; "nbgrader" for a
            folder that is not nbgrader's).
    """
    subs: list[Submission] = []
    excluded = {p.resolve() for p in exclude}
    seen: set[Path] = set()
    for arg in paths:
        arg = arg.resolve()
        if arg in seen:
            continue
        seen.add(arg)
        if arg.is_file():
            subs.append(Submission(arg.stem, arg.name, arg))
            continue
        nbgrader = resolve_layout(arg, layout)
        if nbgrader is not None and nbgrader[0] == INBOUND:
            inbound = nbgrader[1]
            chosen, strays = latest_inbound(inbound)
            for student, folder in chosen:
                if folder.resolve() not in excluded:
                    subs += _student_folder(folder, student, f"{inbound.name}/{folder.name}")
            subs += [Submission(p.name, f"{inbound.name}/{p.name}", None, "not an nbgrader submission "
                                "(<student>+<assignment>+<timestamp>)") for p in strays if p.resolve() not in excluded]
            continue
        if nbgrader is not None:  # submitted/<student>/<assignment>/<notebook>.ipynb: a folder per student
            arg = nbgrader[1]
        for entry in sorted(arg.iterdir(), key=lambda p: p.name):
            if entry.name.startswith(".") or entry.resolve() in excluded:
                continue
            if entry.is_symlink():  # a link could point at the solutions: never follow one
                subs.append(Submission(entry.stem, f"{arg.name}/{entry.name}", None, "a symbolic link, not a notebook"))
            elif entry.is_file() and entry.suffix == ".ipynb":
                subs.append(Submission(entry.stem, f"{arg.name}/{entry.name}", entry))
            elif entry.is_dir():
                subs += _student_folder(entry, entry.name, f"{arg.name}/{entry.name}")
    keys: dict[tuple[str, str], int] = {}
    for sub in subs:  # two SUB folders with the same name: keep the rows apart
        key = (sub.student, sub.notebook)
        keys[key] = keys.get(key, 0) + 1
        if keys[key] > 1:
            sub.notebook = f"{sub.notebook} ({keys[key]})"
    return subs


def _student_folder(folder: Path, student: str, label: str) -> list[Submission]:
    """One student's folder: a submission per notebook in it (any depth), or one row saying there is none."""
    subs = []
    inside = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*.ipynb")}
    notebooks = sorted(rel for rel in inside if not any(part.startswith(".") for part in rel.split("/")))
    for rel in notebooks:
        link = any(q.is_symlink() for q in (inside[rel], *inside[rel].parents) if folder in (q, *q.parents))
        subs.append(Submission(student, f"{label}/{rel}", None if link else inside[rel],
                               "a symbolic link, not a notebook" if link else ""))
    if not notebooks:
        subs.append(Submission(student, f"{label}/", None, "no .ipynb notebook in the folder"))
    return subs


# --------------------------------------------------------------------------------------------
# Reading a notebook: cells, magics, the chapter.
# --------------------------------------------------------------------------------------------


_KEEP_CELL_MAGICS = {"time", "timeit", "capture", "prun"}  # their body is Python; run it
_HELP_LINE = re.compile(r"^[\w.]+\?{1,2}$")
_MAGIC_ASSIGNMENT = re.compile(r"^[\w.,\s]+=\s*[!%]")


def python_source(source: str) -> str:
    """A code cell's source as plain Python: IPython magics, shell lines and ``obj?`` neutralised.

    A line magic or shell line becomes ``pass`` (same indentation, so blocks stay valid),
    except ``%time stmt``, which keeps ``stmt``. A cell magic whose body is Python
    (``%%time``, ``%%capture``, ...) keeps its body; any other (``%%bash``, ``%%writefile``)
    drops the whole cell.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split(" ")[0].strip()
        if magic not in _KEEP_CELL_MAGICS:
            return ""
        lines = lines[1:]
    out = []
    for line in lines:
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("%time ") and not stripped.startswith("%timeit"):
            out.append(indent + stripped[len("%time "):])
        elif stripped.startswith(("%", "!")) or _HELP_LINE.match(stripped) or _MAGIC_ASSIGNMENT.match(stripped):
            out.append(indent + "pass")
        else:
            out.append(line)
    return "\n".join(out)


def _only_calls_checks(source: str) -> bool:
    """True for a cell like ``check_softmax(softmax);`` (the grader runs its own checks)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return bool(tree.body) and all(
        isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
        and s.value.func.id.startswith("check_")
        for s in tree.body
    )


def _defined_names(cells: list[tuple[int, str]]) -> set[str]:
    names: set[str] = set()
    for _, source in cells:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            names.update(re.findall(r"^def\s+(\w+)", source, flags=re.M))
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    return names


def identify_chapter(nb: Any, filename: str, cells: list[tuple[int, str]], chapters: dict[str, Chapter]) -> str | None:
    """The chapter of a submission: metadata, else file name, else the exercise functions it defines."""
    course = nb.metadata.get("course", {}) if isinstance(nb.metadata, dict) else {}
    generated = course.get("generated_from") if isinstance(course, dict) else None
    if isinstance(generated, str) and Path(generated).stem in chapters:
        return Path(generated).stem
    if Path(filename).stem in chapters:
        return Path(filename).stem
    lms = parse_lms_name(filename)  # a Canvas or Moodle download: the name the student uploaded
    if lms is not None and Path(lms.filename).stem in chapters:
        return Path(lms.filename).stem
    defined = _defined_names(cells)
    best, best_count = None, 0
    for name, chapter in chapters.items():
        count = len(defined & set(chapter.names))
        if count > best_count:
            best, best_count = name, count
    return best


def submission_version(nb: Any) -> str:
    """The exercise version a notebook was made from (``course.version`` in its metadata), or ""."""
    course = nb.metadata.get("course", {}) if isinstance(nb.metadata, dict) else {}
    version = course.get("version") if isinstance(course, dict) else None
    return version[:40] if isinstance(version, str) else ""


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:200]

