"""``course-grade``: grade a class's exercise notebooks in batch, safely.

Usage::

    course-grade SUB... --out DIR [--timeout S] [--memory MB] [--jobs N] [--seed N]
    make grade SUBMISSIONS=dir [OUT=grades]

``SUB`` is a notebook (the student id is its file name without ``.ipynb``) or a folder. In a
folder, each notebook is one student's submission (id: file name), and each sub-folder is one
student (id: folder name) holding one or more notebooks, one per chapter: every notebook gets
its own row, with a ``notebook`` column (its path from the SUB folder's parent) and a
``chapter`` column. Hidden files and folders (``.ipynb_checkpoints``) are skipped.

For each notebook the grader

1. reads and validates it with nbformat (else status ``invalid-notebook``) and identifies its
   chapter: from the metadata that ``make exercises`` writes (``course.generated_from``), else
   from the file name, else from the exercise functions it defines;
2. collects the chapter's exercises from the check calls in ``solutions/NN_topic.ipynb``
   (``check_<name>(...)``) and the check functions themselves, run under
   :func:`course_lib.checks.core.capture` with the instructor's ``--seed``: a new chapter
   needs no change here;
3. runs the notebook's code in a separate process, :mod:`course_lib.grading_worker`, in a fresh
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

Output: ``DIR/grades.csv`` (one row per notebook: student, notebook, chapter, status, reason,
one column per exercise, total, max) and ``DIR/feedback/<student>.md`` (per exercise: each
property passed or failed with the reason, shapes and dtypes only, and the diagnosis; never the
reference code or the hidden inputs). Statuses: ``ok``, ``timeout``, ``memory``, ``crash``,
``invalid-notebook``, ``missing-function``, ``sandbox-violation`` (the code tried something the
sandbox refused; scores are for what ran) and ``grader-error`` (a bug of the grader on that
notebook; the rest of the batch is graded). The same inputs and seed give the same files, byte
for byte. Exit status: 0 when every notebook got a row, 2 for bad command-line input.
"""

from __future__ import annotations

import argparse
import ast
import csv
import inspect
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checks import core
from .checks.handwritten import hand_written_result, ready_made_in_cells
from .checks.points import points_for

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 60
DEFAULT_MEMORY_MB = 2048
DEFAULT_SEED = 1
MIN_MEMORY_MB = 512  # `import torch` plus course_lib needs about 230 MB resident, 600 MB of address space
FILE_SIZE_MB = 64  # the largest file the submission may write
MAX_NOTEBOOK_BYTES = 50 << 20
MAX_OUTCOME_NUMEL = 1 << 20  # a returned tensor larger than this comes back as its shape only
MAX_RESULTS_BYTES = 256 << 20
STATUS_ORDER = ("grader-error", "invalid-notebook", "timeout", "memory", "crash", "sandbox-violation",
                "missing-function", "ok")


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
        has ``error`` set (its notebooks get status grader-error) instead of stopping the run.
    """
    import nbformat

    from . import checks

    chapters: dict[str, Chapter] = {}
    for path in sorted(solutions.glob("*.ipynb")):
        chapter = Chapter(path.stem)
        chapters[path.stem] = chapter
        try:
            nb = nbformat.read(path, as_version=4)
            names: list[str] = []
            for cell in nb.cells:
                if cell.cell_type == "code":
                    names += [n for n in _CHECK_CALL.findall(cell.source) if n not in names]
            for name in names:
                check = getattr(checks, f"check_{name}", None)
                if not callable(check):
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


def find_submissions(paths: list[Path], exclude: list[Path]) -> list[Submission]:
    """The submissions under the SUB arguments (see the module doc), in a stable order."""
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
        for entry in sorted(arg.iterdir(), key=lambda p: p.name):
            if entry.name.startswith(".") or entry.resolve() in excluded:
                continue
            if entry.is_symlink():  # a link could point at the solutions: never follow one
                subs.append(Submission(entry.stem, f"{arg.name}/{entry.name}", None, "a symbolic link, not a notebook"))
            elif entry.is_file() and entry.suffix == ".ipynb":
                subs.append(Submission(entry.stem, f"{arg.name}/{entry.name}", entry))
            elif entry.is_dir():
                inside = {p.relative_to(entry).as_posix(): p for p in entry.rglob("*.ipynb")}
                notebooks = sorted(rel for rel in inside if not any(part.startswith(".") for part in rel.split("/")))
                for rel in notebooks:
                    link = any(q.is_symlink() for q in (inside[rel], *inside[rel].parents) if entry in (q, *q.parents))
                    subs.append(Submission(entry.name, f"{arg.name}/{entry.name}/{rel}", None if link else inside[rel],
                                           "a symbolic link, not a notebook" if link else ""))
                if not notebooks:
                    subs.append(Submission(entry.name, f"{arg.name}/{entry.name}/", None,
                                           "no .ipynb notebook in the folder"))
    keys: dict[tuple[str, str], int] = {}
    for sub in subs:  # two SUB folders with the same name: keep the rows apart
        key = (sub.student, sub.notebook)
        keys[key] = keys.get(key, 0) + 1
        if keys[key] > 1:
            sub.notebook = f"{sub.notebook} ({keys[key]})"
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
    defined = _defined_names(cells)
    best, best_count = None, 0
    for name, chapter in chapters.items():
        count = len(defined & set(chapter.names))
        if count > best_count:
            best, best_count = name, count
    return best


# --------------------------------------------------------------------------------------------
# Running the worker.
# --------------------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    """What the sandbox process left behind."""

    returncode: int | None
    timed_out: bool
    results: dict | None
    results_error: str
    progress: str
    stderr_head: str


@dataclass
class Settings:
    """The grader's settings for one run."""

    timeout: int
    memory: int
    seed: int
    denied: list[str]
    labels: dict[str, str] = field(default_factory=dict)  # grader paths -> what feedback shows instead
    workspace: str | None = None  # the folder holding every sandbox of this run (denied to the others)
    server: ForkServer | None = None  # forks the sandbox processes; None: start each one afresh

    def relabel(self, text: str) -> str:
        """``text`` with the grader's own paths replaced by labels (<solutions>, <output>, ...)."""
        for path in sorted(self.labels, key=len, reverse=True):
            text = text.replace(path, self.labels[path])
        return text


def run_worker(cells: list[tuple[int, str]], chapter: Chapter, settings: Settings) -> WorkerRun:
    """Run one notebook's code and calls in a sandbox process; always returns, never raises on its behalf."""
    sandbox = Path(tempfile.mkdtemp(prefix="course-grade-", dir=settings.workspace))
    try:
        job = {"cells": cells, "exercises": chapter.job_inputs, "denied": settings.denied,
               "max_numel": MAX_OUTCOME_NUMEL}
        torch.save(job, sandbox / "job.pt")
        limits = {"memory": settings.memory, "cpu": settings.timeout, "fsize": FILE_SIZE_MB,
                  "trusted": chapter.trusted_pickle}
        outcome = None
        if settings.server is not None:
            try:
                outcome = settings.server.run(str(sandbox), limits, settings.timeout)
            except ForkServerGone:
                for leftover in ("results.pt", "progress.txt", "stderr.txt"):
                    (sandbox / leftover).unlink(missing_ok=True)
                torch.save(job, sandbox / "job.pt")
        if outcome is None:
            outcome = _run_fresh_process(sandbox, limits, settings.timeout)
        returncode, timed_out = outcome
        results, results_error = _load_results(sandbox / "results.pt")
        return WorkerRun(returncode, timed_out, results, results_error, _read_head(sandbox / "progress.txt", 200),
                         _read_head(sandbox / "stderr.txt", 64 * 1024))
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def _run_fresh_process(sandbox: Path, limits: dict, timeout: int) -> tuple[int | None, bool]:
    """Run the job in a new ``python -m course_lib.grading_worker`` process; (return code, timed out)."""
    command = [sys.executable, "-s", "-m", "course_lib.grading_worker", "--memory", str(limits["memory"]),
               "--cpu", str(limits["cpu"]), "--fsize", str(limits["fsize"]),
               "--trusted-pickle", "1" if limits["trusted"] else "0"]
    with open(sandbox / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(command, cwd=sandbox, env=_worker_env(sandbox), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, close_fds=True)
        timed_out = False
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            returncode = proc.wait()
        finally:
            _kill_group(proc.pid)  # anything the submission left running
    return returncode, timed_out


class ForkServerGone(RuntimeError):
    """The fork server is not running (any more); the caller starts a fresh process instead."""


class ForkServer:
    """A long-lived worker process that has imported torch and forks one sandbox process per notebook.

    Each notebook still runs in a process of its own, in its own session (killed as a group on
    timeout), with its own limits and audit hook (see :func:`course_lib.grading_worker.serve`);
    only ``import torch`` (about 2 s) is shared. Thread-safe: ``--jobs`` threads call :meth:`run`.
    """

    def __init__(self, workspace: str):
        env = _worker_env(Path(workspace))
        self._proc = subprocess.Popen([sys.executable, "-s", "-m", "course_lib.grading_worker", "--server"],
                                      cwd=workspace, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        self._cond = threading.Condition()
        self._started: dict[int, int] = {}
        self._exited: dict[int, int] = {}
        self._alive = True
        self._next_id = 0
        threading.Thread(target=self._read, name="course-grade-fork-server", daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:  # type: ignore[union-attr]
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "id" in message:
                    self._started[message["id"]] = message["pid"]
                else:
                    self._exited[message["pid"]] = message["status"]
                self._cond.notify_all()
        with self._cond:
            self._alive = False
            self._cond.notify_all()

    def run(self, sandbox: str, limits: dict, timeout: int) -> tuple[int | None, bool]:
        """Run the job in ``sandbox``; (return code, negative for a signal; timed out).

        Raises:
            ForkServerGone: if the server is not running (nothing of this job has run to the end).
        """
        with self._cond:
            if not self._alive:
                raise ForkServerGone()
            self._next_id += 1
            request_id = self._next_id
            try:
                self._proc.stdin.write((json.dumps({"id": request_id, "sandbox": sandbox, **limits}) + "\n").encode())
                self._proc.stdin.flush()
            except (OSError, ValueError) as exc:
                raise ForkServerGone() from exc
            self._cond.wait_for(lambda: request_id in self._started or not self._alive, timeout=60)
            if request_id not in self._started:
                raise ForkServerGone()
            pid = self._started.pop(request_id)
            timed_out = not self._cond.wait_for(lambda: pid in self._exited or not self._alive, timeout=timeout)
        if timed_out:
            _kill_group(pid)
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exited or not self._alive, timeout=30)
            status = self._exited.pop(pid, None)
        _kill_group(pid)  # anything the submission left running
        if status is None:  # the server died under this job
            raise ForkServerGone()
        return os.waitstatus_to_exitcode(status), timed_out

    def close(self) -> None:
        """Stop the server (it kills any child still running) and wait for it."""
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _kill_group(self._proc.pid)
        self._proc.wait()


def _worker_env(sandbox: Path) -> dict[str, str]:
    home = str(sandbox)
    return {
        "PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "", "COURSE_DEVICE": "cpu", "MPLBACKEND": "Agg", "MPLCONFIGDIR": home,
        "XDG_CACHE_HOME": home, "TORCH_HOME": home,
    }


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_head(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _load_results(path: Path) -> tuple[dict | None, str]:
    """The worker's results, loaded safely (weights_only); None and why when unusable."""
    try:
        size = path.stat().st_size
    except OSError:
        return None, "no results"
    if size > MAX_RESULTS_BYTES:
        return None, "results too large"
    try:
        results = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001  a truncated or forged file
        return None, f"unreadable results ({type(exc).__name__})"
    if not isinstance(results, dict) or not isinstance(results.get("exercises"), dict):
        return None, "malformed results"
    return results, ""


# --------------------------------------------------------------------------------------------
# Judging the results (in this process).
# --------------------------------------------------------------------------------------------


class _Opaque:
    """Stands for a value that did not travel back (its type name is all the grader knows)."""


def _opaque(type_name: str) -> Any:
    name = re.sub(r"\W", "_", str(type_name))[:60] or "object"
    if not name[0].isalpha() and name[0] != "_":
        name = "_" + name
    return type(name, (_Opaque,), {})()


def _decode(value: Any, depth: int = 0) -> Any:
    """A returned value, rebuilt from the worker's data; anything unexpected becomes an opaque stand-in."""
    if depth > 6:
        return _opaque("object")
    if isinstance(value, torch.Tensor):
        return value.detach().as_subclass(torch.Tensor)
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is dict:
        if set(value) == {"__opaque__"}:
            return _opaque(value["__opaque__"])
        if set(value) == {"__oversized__", "dtype"}:
            dtype = getattr(torch, str(value["dtype"]), None)
            shape = value["__oversized__"]
            if isinstance(dtype, torch.dtype) and isinstance(shape, list) \
                    and all(type(n) is int and n >= 0 for n in shape):
                return torch.empty(shape, dtype=dtype, device="meta")
            return _opaque("Tensor")
        return {str(k): _decode(v, depth + 1) for k, v in value.items()}
    if type(value) in (list, tuple):
        items = [_decode(v, depth + 1) for v in value]
        return items if type(value) is list else tuple(items)
    return _opaque(type(value).__name__)


def _decode_outcomes(raw: Any, exercise: core.Exercise) -> list[list[core.Outcome]] | None:
    """The per-case outcomes of one exercise, validated against its cases; None when malformed."""
    if not isinstance(raw, list) or len(raw) != len(exercise.properties):
        return None
    outcomes: list[list[core.Outcome]] = []
    for row, prop in zip(raw, exercise.properties):
        if not isinstance(row, list) or len(row) != len(prop.cases):
            return None
        decoded: list[core.Outcome] = []
        for item in row:
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "ok":
                decoded.append(core.Returned(_decode(item[1])))
            elif isinstance(item, tuple) and len(item) == 4 and item[0] == "raised":
                decoded.append(core.Raised(str(item[1])[:100], str(item[2])[:500], bool(item[3])))
            else:
                return None
        outcomes.append(decoded)
    return outcomes


@dataclass
class ExerciseGrade:
    """One exercise of one notebook: points earned, and what the feedback says."""

    name: str
    points: float
    earned: float = 0.0
    state: str = "graded"  # graded, missing, not-callable, not-implemented, not-run, error
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


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:200]


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

    @property
    def total(self) -> float:
        return sum(round(g.earned, 2) for g in self.grades)

    @property
    def max_points(self) -> float:
        return sum(g.points for g in self.grades)

    def worsen(self, status: str, reason: str) -> None:
        """Record a problem; the status shown is the most serious one."""
        if STATUS_ORDER.index(status) < STATUS_ORDER.index(self.status):
            self.status = status
        if reason and reason not in self.reasons:
            self.reasons.append(reason)


def grade_submission(sub: Submission, chapters: dict[str, Chapter], settings: Settings) -> Row:
    """Grade one notebook; every outcome, a grader bug included, is a Row."""
    row = Row(sub.student, sub.notebook)
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
    _classify(row, run, nb, settings)


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


def _classify(row: Row, run: WorkerRun, nb: Any, settings: Settings) -> None:
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
        row.worsen("sandbox-violation", f"refused: {sanitize(settings.relabel(str(text)))}")
    missing = [g.name for g in row.grades if g.state in ("missing", "not-callable")]
    if missing:
        row.worsen("missing-function", "not defined: " + ", ".join(missing))
    for index, type_name, message in cells:
        if type_name == "SystemExit":
            row.notes.append(f"cell {index + 1} called sys.exit(): ignored, as Jupyter does")
            row.worsen(row.status, "a cell called sys.exit() (ignored, as Jupyter does)")
        else:
            row.notes.append(f"cell {index + 1} raised {sanitize(f'{type_name}: {message}'.rstrip(': '))}")


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


# --------------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------------


def grade(submissions: list[Path], out: Path, *, timeout: int = DEFAULT_TIMEOUT, memory: int = DEFAULT_MEMORY_MB,
          jobs: int = 1, seed: int = DEFAULT_SEED, solutions: Path | None = None, progress: bool = True,
          fork_server: bool = True) -> list[Row]:
    """Grade every submission and write ``out/grades.csv`` and ``out/feedback/``.

    Args:
        submissions: notebooks and folders (see the module doc).
        out: the output folder (created).
        timeout: wall-clock seconds per notebook (also its CPU-time limit).
        memory: memory limit per notebook, in MB (data segment; address space gets 1 GB more).
        jobs: notebooks graded in parallel.
        seed: the instructor's seed for the grader's inputs.
        solutions: the folder of solution notebooks that defines the chapters (default: the course's).
        progress: show a progress bar on stderr.
        fork_server: fork each sandbox process from one that has imported torch already (about 2 s
            saved per notebook); False starts a fresh Python process for each notebook.
    Returns:
        the rows, sorted by student and notebook.
    """
    from tqdm import tqdm

    warnings.filterwarnings("ignore", module="nbformat")
    solutions = (solutions or ROOT / "solutions").resolve()
    out = out.resolve()
    chapters = discover_chapters(solutions, seed)
    subs = find_submissions(submissions, exclude=[out])
    labels = {str(p.resolve()): "<submissions>" for p in submissions}
    labels.update({str(solutions): "<solutions>", str(out): "<output>"})
    workspace = tempfile.mkdtemp(prefix="course-grade-run-")  # sandboxes in here; each may read only its own
    labels[workspace] = "<sandboxes>"
    settings = Settings(timeout, memory, seed, sorted(labels), labels, workspace)
    rows: list[Row] = []
    try:
        if fork_server and subs:
            settings.server = ForkServer(workspace)
        with tqdm(total=len(subs), desc="course-grade", unit="notebook", file=sys.stderr,
                  disable=not progress) as bar, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(grade_submission, sub, chapters, settings): sub for sub in subs}
            for future in as_completed(futures):
                try:
                    rows.append(future.result())
                except Exception as exc:  # noqa: BLE001  grade_submission catches everything; belt and braces
                    sub = futures[future]
                    rows.append(Row(sub.student, sub.notebook, status="grader-error",
                                    reasons=[f"grader error: {type(exc).__name__}: {_one_line(exc)}"]))
                bar.update(1)
    finally:
        if settings.server is not None:
            settings.server.close()
        shutil.rmtree(workspace, ignore_errors=True)
    rows.sort(key=lambda r: (r.student, r.notebook))
    out.mkdir(parents=True, exist_ok=True)
    write_grades(rows, chapters, out / "grades.csv")
    write_feedback(rows, out / "feedback")
    return rows


def main(argv: list[str] | None = None) -> int:
    """The ``course-grade`` console script (see the module doc)."""
    parser = argparse.ArgumentParser(
        prog="course-grade",
        description="Grade exercise notebooks in batch: grades.csv and feedback/<student>.md in --out.",
    )
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUB",
                        help="a notebook, or a folder of notebooks (one per student) or of student folders")
    parser.add_argument("--out", required=True, type=Path, help="output folder (grades.csv, feedback/)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help=f"seconds per notebook, wall clock and CPU (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB,
                        help=f"memory limit per notebook in MB (default {DEFAULT_MEMORY_MB}, at least {MIN_MEMORY_MB})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="notebooks graded in parallel (default: the number of CPUs)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the grader's inputs; keep yours private (default {DEFAULT_SEED})")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for path in args.submissions:
        if not path.exists():
            parser.error(f"no such file or folder: {path}")
        if path.is_file() and path.suffix != ".ipynb":
            parser.error(f"not a notebook (.ipynb): {path}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out is a file, not a folder: {args.out}")
    if args.timeout < 1:
        parser.error("--timeout must be at least 1 second")
    if args.memory < MIN_MEMORY_MB:
        parser.error(f"--memory must be at least {MIN_MEMORY_MB} MB (importing torch needs about that)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not args.solutions.is_dir():
        parser.error(f"no solutions folder at {args.solutions} (run course-grade from the course checkout)")
    out = args.out.resolve()
    if not find_submissions(args.submissions, exclude=[out]):
        parser.error("no notebooks found in " + ", ".join(str(p) for p in args.submissions))
    rows = grade(args.submissions, args.out, timeout=args.timeout, memory=args.memory, jobs=args.jobs,
                 seed=args.seed, solutions=args.solutions, progress=not args.no_progress)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"graded {len(rows)} notebook(s): {summary}; wrote {out / 'grades.csv'} and {out / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
