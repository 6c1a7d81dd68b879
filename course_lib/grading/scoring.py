"""Turning a worker's results into a row: statuses, per-exercise scores (judged in the grader's process), reasons."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from typing import Any


from ..checks import core
from ..checks.handwritten import hand_written_result, ready_made_in_cells

from .discovery import (Chapter, GradedExercise, Submission, _one_line, _only_calls_checks, identify_chapter,
                        python_source, submission_version)
from .sandbox import Settings, WorkerRun, _decode_outcomes, run_worker
from .settings import MAX_NOTEBOOK_BYTES, STATUS_ORDER


@dataclass
class ExerciseGrade:
    """One exercise of one notebook: points earned, and what the feedback says."""

    name: str
    points: float
    earned: float = 0.0
    state: str = "graded"  # graded, missing, not-callable, not-implemented, not-run, error, syntax-error
    note: str = ""
    report: core.CheckReport | None = None
    exercise: core.Exercise | None = None


def grade_exercise(graded: GradedExercise, entry: Any, cell_sources: list[str]) -> ExerciseGrade:
    """Judge one exercise from the worker's entry (or its absence), in the grader's process."""
    ex = graded.exercise
    grade = ExerciseGrade(ex.name, graded.points, exercise=ex)
    if not isinstance(entry, dict):
        grade.state, grade.note = "not-run", "not graded: the notebook stopped before this exercise was called"
        return grade
    status = entry.get("status")
    if status == "missing":
        grade.state, grade.note = "missing", f"not found: define a function named `{ex.name}`"
        return grade
    if status == "not-callable":
        grade.state = "not-callable"
        grade.note = f"`{ex.name}` is a {sanitize(str(entry.get('type', 'value')))}, not a function"
        return grade
    outcomes = _decode_outcomes(entry.get("outcomes"), ex) if status == "ok" else None
    if outcomes is None:
        why = "malformed results"
        if status == "error":
            why = f"{entry.get('type', '')}: {entry.get('message', '')}".strip(": ")
        grade.state, grade.note = "error", f"could not be called: {sanitize(str(why))}"
        return grade
    outcomes = [[_sanitized_outcome(o) for o in row] for row in outcomes]
    try:
        report = core.judge(ex, outcomes, show_values=False)
    except Exception as exc:  # noqa: BLE001  e.g. a returned value the comparison cannot handle
        grade.state, grade.note = "error", f"could not be judged ({type(exc).__name__})"
        return grade
    if report.status == "not implemented":
        grade.state, grade.note = "not-implemented", "not implemented yet (still raises NotImplementedError)"
        grade.report = report
        return grade
    result = hand_written_result(ex.name, ready_made_in_cells(ex.name, cell_sources))
    if result is not None:
        report.results.append(result)
        report.status = "failed"
    grade.report = report
    grade.earned = graded.points * report.passed / report.total if report.total else 0.0
    return grade


def _sanitized_outcome(outcome: core.Outcome) -> core.Outcome:
    if isinstance(outcome, core.Raised):
        return core.Raised(sanitize(outcome.type_name), sanitize(outcome.message), outcome.not_implemented)
    return outcome


_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?")


def sanitize(text: str) -> str:
    """Make a submission's text safe to show: one line, no sandbox path, no float values, bounded.

    Error messages come from the submission's process, so they could carry the hidden inputs'
    values; decimals are masked (shapes, which are integers, stay readable).
    """
    text = str(text).replace("\r", " ").replace("\n", " ")
    text = re.sub(r"/[^\s'\"]*course-grade-[^/\s'\"]+", "<sandbox>", text)
    text = _FLOAT.sub("<number>", text)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:300] + ("..." if len(text) > 300 else "")


# --------------------------------------------------------------------------------------------
# Grading one submission: every path ends in a row.
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One row of grades.csv, with what its feedback section needs."""

    student: str
    notebook: str
    chapter: str = ""
    status: str = "ok"
    reasons: list[str] = field(default_factory=list)
    grades: list[ExerciseGrade] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # shown first in the notebook's feedback section
    version: str = ""  # the exercise version: "current", "old <stamp>", "unknown" (no stamp), "" (no chapter)
    lms_id: str = ""  # the student's id in the LMS, from --roster

    @property
    def total(self) -> float:
        return sum(round(g.earned, 2) for g in self.grades)

    @property
    def max_points(self) -> float:
        return sum(g.points for g in self.grades)

    @property
    def percent(self) -> float | None:
        """total / max in percent; None when the notebook has no graded exercise."""
        return 100.0 * self.total / self.max_points if self.max_points else None

    def worsen(self, status: str, reason: str) -> None:
        """Record a problem; the status shown is the most serious one."""
        if STATUS_ORDER.index(status) < STATUS_ORDER.index(self.status):
            self.status = status
        if reason and reason not in self.reasons:
            self.reasons.append(reason)


def grade_submission(sub: Submission, chapters: dict[str, Chapter], settings: Settings) -> Row:
    """Grade one notebook; every outcome, a grader bug included, is a Row."""
    row = Row(sub.student, sub.notebook, lms_id=sub.lms_id)
    try:
        _grade_into(row, sub, chapters, settings)
    except Exception as exc:  # noqa: BLE001  a bug here must not stop the batch
        row.grades = [ExerciseGrade(g.name, g.points, state="error", note="not graded (grader error)")
                      for g in row.grades]
        row.worsen("grader-error", f"grader error: {type(exc).__name__}: {_one_line(exc)}")
    return row


def _grade_into(row: Row, sub: Submission, chapters: dict[str, Chapter], settings: Settings) -> None:
    import nbformat

    if sub.path is None:
        row.worsen("invalid-notebook", sub.problem or "no notebook")
        return
    data = sub.path.read_bytes()[: MAX_NOTEBOOK_BYTES + 1]
    if len(data) > MAX_NOTEBOOK_BYTES:
        row.worsen("invalid-notebook", f"larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
        return
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001  not JSON, not a notebook, invalid
        row.worsen("invalid-notebook", f"not a valid notebook: {type(exc).__name__}: {sanitize(_one_line(exc))[:120]}")
        return
    kernel = nb.metadata.get("kernelspec")
    language = kernel.get("language", "python") if isinstance(kernel, dict) else "python"
    if isinstance(language, str) and language.lower() != "python":
        row.worsen("invalid-notebook", f"not a Python notebook (kernel language {language[:30]})")
        return
    all_cells = [(i, python_source(c.source)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    chapter_name = identify_chapter(nb, sub.path.name, all_cells, chapters)
    if chapter_name is None:
        row.worsen("missing-function", "defines none of the exercise functions of any chapter")
        return
    chapter = chapters[chapter_name]
    row.chapter = chapter_name
    _check_version(row, nb, chapter)
    row.grades = [ExerciseGrade(g.exercise.name, g.points, exercise=g.exercise) for g in chapter.exercises]
    if chapter.error:
        row.worsen("grader-error", chapter.error)
        return
    cells = [(i, src) for i, src in all_cells if src.strip() and not _only_calls_checks(src)]
    run = run_worker(cells, chapter, settings)
    results = run.results or {}
    entries = results.get("exercises", {}) if isinstance(results.get("exercises"), dict) else {}
    sources = [src for _, src in all_cells]
    row.grades = [grade_exercise(g, entries.get(g.exercise.name), sources) for g in chapter.exercises]
    broken = syntax_errors(nb, all_cells)
    _blame_syntax_errors(row, broken, nb)
    _classify(row, run, nb, settings, skip_cells={e.index for e in broken})
    _check_attempted(row, nb, chapter)


def _check_version(row: Row, nb: Any, chapter: Chapter) -> None:
    """Compare the notebook's exercise version (its metadata) with the chapter's current one."""
    theirs = submission_version(nb)
    if not theirs or not chapter.version:
        row.version = "unknown"
    elif theirs == chapter.version:
        row.version = "current"
    else:
        row.version = f"old {sanitize(theirs)}"
        row.alerts.append(f"This notebook was made from another version of the exercise ({sanitize(theirs)}; the "
                          f"current one is {chapter.version}). It was graded against the current checks: if a task "
                          "changed, download the current exercise notebook and move your code into it.")


@dataclass(frozen=True)
class SyntaxProblem:
    """A code cell Python cannot read: its index in the notebook, its number among the code cells, the line."""

    index: int
    number: int
    line: int | None
    message: str

    def where(self) -> str:
        at = f", line {self.line}" if self.line else ""
        return f"syntax error in code cell {self.number} (counting code cells only){at}"


def syntax_errors(nb: Any, cells: list[tuple[int, str]]) -> list[SyntaxProblem]:
    """The code cells that do not compile, as the worker would run them (magics removed); nothing is run.

    Args:
        nb: the notebook.
        cells: (index in nb.cells, Python source) of every code cell, in order.
    Returns:
        one :class:`SyntaxProblem` per cell that raises SyntaxError (IndentationError included) or
        ValueError (a null byte) when compiled; the line counts from the cell's first line as shown.
    """
    found = []
    for number, (index, source) in enumerate(cells, 1):
        try:
            compile(source, f"<code cell {number}>", "exec", dont_inherit=True)
        except SyntaxError as exc:
            raw = nb.cells[index].source.splitlines()[:1] if index < len(nb.cells) else []
            shift = 1 if raw and raw[0].lstrip().startswith("%%") else 0  # python_source dropped a cell magic's line
            line = exc.lineno + shift if isinstance(exc.lineno, int) and exc.lineno > 0 else None
            found.append(SyntaxProblem(index, number, line, sanitize(type(exc).__name__ + ": " + str(exc.msg))))
        except ValueError as exc:  # e.g. source code string cannot contain null bytes
            found.append(SyntaxProblem(index, number, None, sanitize(f"ValueError: {_one_line(exc)}")))
        except (RecursionError, MemoryError):  # too deeply nested to compile here: the worker will say
            continue
    return found


def _defines(source: str, name: str) -> bool:
    """Whether a cell Python cannot parse seems to define ``name`` (read line by line)."""
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\b|^{re.escape(name)}\s*=", source, flags=re.M) is not None


def _blame_syntax_errors(row: Row, broken: list[SyntaxProblem], nb: Any) -> None:
    """Put the syntax error at the top of the row; the functions it hid are not graded, not called missing."""
    if not broken:
        return
    first = broken[0]
    more = f" (and {len(broken) - 1} more cell{'s' if len(broken) > 2 else ''})" if len(broken) > 1 else ""
    row.worsen("syntax-error", f"{first.where()}: {first.message}{more}")
    hidden = []
    for g in row.grades:
        if g.state != "missing":
            continue
        cell = next((e for e in broken if _defines(nb.cells[e.index].source, g.name)), None)
        if cell is not None:
            g.state = "syntax-error"
            g.note = (f"not graded: `{g.name}` is defined in code cell {cell.number}, which has a syntax error"
                      + (f" (line {cell.line})" if cell.line else "") + "; fix it and this exercise is checked")
            hidden.append(g.name)
    where = first.where()
    text = f"**{where[0].upper()}{where[1:]}**{more}: {first.message}. Python could not read that cell, so none of it ran"
    text += f": {', '.join(hidden)} could not be graded." if hidden else "."
    callers = [g.name for g in row.grades if g.report is not None and any(
        f"NameError: name '{name}' is not defined" in r.detail for r in g.report.results for name in hidden)]
    if callers:
        text += f" {', '.join(callers)} call{'s' if len(callers) == 1 else ''} it and fail{'s' if len(callers) == 1 else ''}" \
                " with NameError until the cell is fixed."
    row.alerts.insert(0, text)


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _check_attempted(row: Row, nb: Any, chapter: Chapter) -> None:
    """Status not-attempted when every exercise is still the stub (raises NotImplementedError)."""
    if row.status != "ok" or not row.grades or not all(g.state == "not-implemented" for g in row.grades):
        return  # a worse status (a sandbox violation in an added cell, say) says more
    submitted = {_normalised(c.source) for c in nb.cells if c.cell_type == "code"}
    untouched = bool(chapter.task_cells) and all(_normalised(t) in submitted for t in chapter.task_cells)
    row.worsen("not-attempted", "not attempted: every exercise still raises NotImplementedError"
               + (" (the exercise cells are as distributed)" if untouched else ""))


def _where(progress: str, nb: Any) -> str:
    """'while running cell 5 ("while True:")' from the worker's progress marker."""
    match = re.fullmatch(r"cell (\d+)", progress.strip())
    if match:
        index = int(match.group(1))
        first = next((line.strip() for line in nb.cells[index].source.splitlines() if line.strip()), "") \
            if index < len(nb.cells) else ""
        first = sanitize(first)[:40]
        return f" while running cell {index + 1}" + (f' ("{first}")' if first else "")
    match = re.fullmatch(r"exercise (\w+)", progress.strip())
    if match:
        return f" while calling {match.group(1)}"
    return " while starting" if not progress.strip() else ""


def _attempt(refusal: str) -> str:
    """'tried to open <solutions>/x.ipynb for reading' from the worker's 'reading <solutions>/x.ipynb'."""
    for verb, mode in (("reading ", "reading"), ("writing ", "writing")):
        if refusal.startswith(verb):
            target = refusal[len(verb):].replace(" (outside the sandbox)", "")
            return f"tried to open {target} for {mode}"
    return f"tried {refusal}"


def _classify(row: Row, run: WorkerRun, nb: Any, settings: Settings, skip_cells: set[int] = frozenset()) -> None:
    """Set the row's status and reasons from how the worker ended and what it reported."""
    results = run.results or {}
    complete = results.get("complete") is True
    events = results.get("events") if isinstance(results.get("events"), dict) else {}
    raw_cells = results.get("cells") if isinstance(results.get("cells"), list) else []
    cells = [c for c in raw_cells if isinstance(c, tuple) and len(c) == 3 and type(c[0]) is int]
    where = "" if complete else _where(run.progress, nb)
    signal_name = ""
    if run.returncode is not None and run.returncode < 0:
        try:
            signal_name = signal.Signals(-run.returncode).name
        except ValueError:
            signal_name = f"signal {-run.returncode}"
    if run.timed_out:
        row.worsen("timeout", f"stopped after the {settings.timeout} s time limit{where}")
    elif signal_name == "SIGXCPU":
        row.worsen("timeout", f"used more than {settings.timeout} s of CPU time{where}")
    elif events.get("memory") is True or (
            not complete and any(t in run.stderr_head for t in ("bad_alloc", "MemoryError"))):
        failed = [c[0] for c in cells if c[1] == "MemoryError" or "allocate" in str(c[2])]
        at = f" in cell {failed[0] + 1}" if failed and complete else where
        row.worsen("memory", f"ran out of its {settings.memory} MB memory limit{at}")
    elif signal_name == "SIGKILL" and not complete:
        row.worsen("memory", f"killed (SIGKILL), most likely out of memory{where}")
    elif not complete:
        if signal_name:
            row.worsen("crash", f"killed by signal {-run.returncode} ({signal_name}){where}")
        elif run.returncode:
            row.worsen("crash", f"the process exited with code {run.returncode}{where} (os._exit or a fatal error)")
        else:
            row.worsen("crash", f"the process ended early{where} ({run.results_error or 'incomplete results'})")
    violations = results.get("violations") if isinstance(results.get("violations"), list) else []
    for text in violations[:3]:
        row.worsen("sandbox-violation", f"sandbox-violation: {_attempt(sanitize(settings.relabel(str(text))))}")
    if violations:  # an attempt on the grader's files or the machine voids the notebook's marks
        for g in row.grades:
            g.earned = 0.0
        row.notes.append("every exercise scores zero: the code tried something the grading sandbox refuses")
    missing = [g.name for g in row.grades if g.state in ("missing", "not-callable")]
    if missing:
        row.worsen("missing-function", "not defined: " + ", ".join(missing))
    for index, type_name, message in cells:
        if index in skip_cells:  # a syntax error: said at the top, with the code cell's number
            continue
        if type_name == "SystemExit":
            row.notes.append(f"cell {index + 1} called sys.exit(): ignored, as Jupyter does")
            row.worsen(row.status, "a cell called sys.exit() (ignored, as Jupyter does)")
        else:
            row.notes.append(f"cell {index + 1} raised {sanitize(f'{type_name}: {message}'.rstrip(': '))}")
