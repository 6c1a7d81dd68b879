"""Running a notebook's code in a confined worker process (fresh, or forked by a fork server) and reading back plain data."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checks import core

from .discovery import Chapter
from .settings import FILE_SIZE_MB, MAX_OUTCOME_NUMEL, MAX_RESULTS_BYTES, ROOT


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
    isolation: str = "landlock"  # "landlock" (Landlock + seccomp, see confine.py) or "none", resolved already
    device: str = "cpu"  # where the learner's functions are called ("cpu" or "cuda"); judged on the CPU

    def relabel(self, text: str) -> str:
        """``text`` with the grader's own paths replaced by labels (<solutions>, <output>, ...)."""
        for path in sorted(self.labels, key=len, reverse=True):
            text = text.replace(path, self.labels[path])
        return text


def run_worker(cells: list[tuple[int, str]], chapter: Chapter, settings: Settings) -> WorkerRun:
    """Run one notebook's code and calls in a sandbox process; always returns, never raises on its behalf."""
    return _run_job(cells, chapter.job_inputs, chapter.trusted_pickle, settings)


class WorkerUnavailable(RuntimeError):
    """The grading worker cannot start on this machine with these settings (no submission's code was run)."""


def preflight(settings: Settings) -> None:
    """Start one worker with no cells and no exercises, exactly as each submission's worker starts.

    ``course-grade`` runs it before a batch on a device other than the CPU: there the worker starts CUDA
    inside its confinement (``confine.cuda_paths``), which depends on the machine's driver and where its
    files lie. Should that fail, it is the grader's failure, said once with the worker's own message,
    rather than a "crash while starting" on every student's row.

    Raises:
        WorkerUnavailable: the worker did not finish its empty job; the message holds its last line of
            stderr and what to do.
    """
    run = _run_job([], [], False, settings)
    if run.timed_out or run.returncode != 0 or not (run.results or {}).get("complete"):
        lines = [line for line in run.stderr_head.splitlines() if line.strip()]
        why = lines[-1].strip() if lines else ("timed out" if run.timed_out else f"exit status {run.returncode}")
        raise WorkerUnavailable(
            f"the grading worker cannot start on device {settings.device!r} with isolation {settings.isolation!r} "
            f"(nothing was graded): {why[:1000]}. Grade with --device cpu, or report this message with the "
            f"output of nvidia-smi.")


def _run_job(cells: list[tuple[int, str]], exercises: list, trusted: bool, settings: Settings) -> WorkerRun:
    sandbox = Path(tempfile.mkdtemp(prefix="course-grade-", dir=settings.workspace))
    try:
        job = {"cells": cells, "exercises": exercises, "denied": settings.denied,
               "max_numel": MAX_OUTCOME_NUMEL, "device": settings.device}
        torch.save(job, sandbox / "job.pt")
        limits = {"memory": settings.memory, "cpu": settings.timeout, "fsize": FILE_SIZE_MB,
                  "trusted": trusted, "isolation": settings.isolation}
        outcome = None
        if settings.server is not None:
            try:
                outcome = settings.server.run(str(sandbox), limits, settings.timeout)
            except ForkServerGone:
                for leftover in ("results.pt", "progress.txt", "stderr.txt"):
                    (sandbox / leftover).unlink(missing_ok=True)
                torch.save(job, sandbox / "job.pt")
        if outcome is None:
            outcome = _run_fresh_process(sandbox, limits, settings.timeout, settings.device)
        returncode, timed_out = outcome
        results, results_error = _load_results(sandbox / "results.pt")
        return WorkerRun(returncode, timed_out, results, results_error, _read_head(sandbox / "progress.txt", 200),
                         _read_head(sandbox / "stderr.txt", 64 * 1024))
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def _run_fresh_process(sandbox: Path, limits: dict, timeout: int, device: str = "cpu") -> tuple[int | None, bool]:
    """Run the job in a new ``python -m course_lib.grading.worker`` process; (return code, timed out)."""
    command = [sys.executable, "-s", "-m", "course_lib.grading.worker", "--memory", str(limits["memory"]),
               "--cpu", str(limits["cpu"]), "--fsize", str(limits["fsize"]),
               "--trusted-pickle", "1" if limits["trusted"] else "0", "--isolation", limits["isolation"]]
    with open(sandbox / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(command, cwd=sandbox, env=_worker_env(sandbox, device), stdin=subprocess.DEVNULL,
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
    timeout), with its own limits and audit hook (see :func:`course_lib.grading.worker.serve`);
    only ``import torch`` (about 2 s) is shared. Thread-safe: ``--jobs`` threads call :meth:`run`.
    """

    def __init__(self, workspace: str, device: str = "cpu"):
        env = _worker_env(Path(workspace), device)  # its children inherit it: the GPUs stay hidden unless on cuda
        self._proc = subprocess.Popen([sys.executable, "-s", "-m", "course_lib.grading.worker", "--server"],
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


def _worker_env(sandbox: Path, device: str = "cpu") -> dict[str, str]:
    """The whole environment of a worker (nothing of the grader's own is inherited).

    GPUs are hidden (``CUDA_VISIBLE_DEVICES=""``) unless ``device`` is a CUDA device: then the worker sees
    the GPUs the grader sees, finds the driver's library where the grader does (``LD_LIBRARY_PATH``),
    and ``COURSE_DEVICE`` names the device.
    """
    home = str(sandbox)
    env = {
        "PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "", "COURSE_DEVICE": "cpu", "MPLBACKEND": "Agg", "MPLCONFIGDIR": home,
        "XDG_CACHE_HOME": home, "TORCH_HOME": home,
    }
    if torch.device(device).type == "cuda":
        del env["CUDA_VISIBLE_DEVICES"]
        for name in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):  # the grader's own GPUs and driver library
            if os.environ.get(name) is not None:
                env[name] = os.environ[name]
        env["COURSE_DEVICE"] = str(device)
    return env


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
