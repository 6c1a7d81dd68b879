"""The sandbox side of ``course-grade``: run one submission's code and call its functions.

The batch grader (:mod:`course_lib.grading`) runs one worker process per submission, in a
fresh temporary directory (its working directory) holding ``job.pt``: the notebook's code cells
(magics already removed) and the grader's inputs for every exercise. The process is forked by a
fork server (``python -m course_lib.grading.worker --server``, see :func:`serve`) that has
imported torch once, or, if the server is unavailable, started afresh as
``python -m course_lib.grading.worker --memory MB --cpu S --fsize MB``. Either way the worker

1. confines itself with the kernel (Landlock and seccomp: :mod:`course_lib.grading.confine`)
   before any submitted code runs; on a GPU it makes its CUDA context only then, so that the
   threads the driver starts are confined too;
2. limits itself: address space and data size (memory), CPU seconds (both on top of what torch,
   and the CUDA context on a GPU, already hold), file size, open files, no core dumps; stdout and
   stderr are capped in memory;
3. installs a Python audit hook, which cannot be removed, that refuses to write outside the
   temporary directory, to read or list the grader's files (solutions, output folder,
   submissions), to start processes, to open network connections, to signal other processes
   and to raise the resource limits;
4. runs the code cells in order as Jupyter would (an error or ``sys.exit()`` stops that cell,
   not the notebook);
5. calls each exercise function on each of the grader's inputs and writes what came back
   (plain tensors, numbers, strings, or a type name), or what was raised, to ``results.pt``
   after every exercise, so that a crash keeps what was already done.

It never judges: the grader loads ``results.pt`` with ``torch.load(weights_only=True)`` and
computes every verdict in its own process, so nothing the submitted code patches here
(``torch.allclose``, ``course_lib.checks``, ...) can change a score. The audit hook is a guard
against ordinary Python code; native code (ctypes) can get around it, which is why the kernel's
confinement comes first, and the verdict and the limits live outside this process.
"""

from __future__ import annotations

import builtins
import inspect
import io
import os
import resource
import signal
import sys
import types
import warnings

import torch

from course_lib.grading import confine as _confine
from course_lib.grading.audit import install_audit_hook as _install_audit_hook
from course_lib.checks import core as _core

_MAX_TEXT = 500  # characters kept of an error message or a returned string
_MAX_ITEMS = 64  # items kept of a returned list, tuple or dict
_MAX_DEPTH = 4
_STREAM_CAP = 64 * 1024  # characters of printed output kept (then discarded)
_MEMORY_TEXTS = ("can't allocate memory", "not enough memory", "std::bad_alloc", "out of memory")

_save = torch.save  # taken before any submitted code can replace them
_replace = os.replace


class _CappedStream(io.TextIOBase):
    """A text stream that keeps the first ``_STREAM_CAP`` characters and drops the rest.

    A huge ``print`` then costs time, never memory or disk.
    """

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        text = str(text)
        if self.size < _STREAM_CAP:
            self.kept.append(text[: _STREAM_CAP - self.size])
        self.size += len(text)
        return len(text)

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"


def _vm_usage() -> tuple[int, int]:
    """(data, address space) that this process holds now, in bytes: VmData and VmSize of /proc/self/status.

    (0, 0) where there is no /proc (macOS): the limits are then absolute, as the numbers say.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmData"].split()[0]) * 1024, int(fields["VmSize"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return 0, 0


def _limit_resources(memory_mb: int, cpu_s: int, fsize_mb: int) -> None:
    """Set this process's resource limits (inherited by anything it could start).

    Memory and CPU are counted on top of what the trusted runtime already holds (torch, and a CUDA
    context on a GPU: a CUDA build of torch maps gigabytes of libraries and address space before any
    submitted code exists), so the submission itself gets ``memory_mb`` and ``cpu_s`` on any build.
    """
    mb = 1 << 20
    data_now, size_now = _vm_usage()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_now = int(usage.ru_utime + usage.ru_stime) + 1
    limits = [
        (resource.RLIMIT_DATA, data_now + memory_mb * mb),
        # Address space: the data limit plus room for libraries that load later (matplotlib's, torch's lazy ones).
        (resource.RLIMIT_AS, size_now + (memory_mb + 1024) * mb),
        (resource.RLIMIT_CPU, cpu_now + cpu_s),
        (resource.RLIMIT_FSIZE, fsize_mb * mb),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 256),
    ]
    for which, value in limits:
        soft, hard = resource.getrlimit(which)
        new_hard = value + (5 if which == resource.RLIMIT_CPU else 0)  # SIGXCPU at the soft limit, SIGKILL at the hard
        if hard != resource.RLIM_INFINITY:
            new_hard = min(new_hard, hard)
        resource.setrlimit(which, (min(value, new_hard), new_hard))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with an error instead of killing us


def _prepare_device(device: str) -> None:
    """Set-up on an accelerator, after the confinement and before the limits (a no-op on cpu and meta).

    The first CUDA call creates the context: it opens the GPU's device files (which the confinement
    grants on a CUDA device: ``confine.cuda_paths``), starts the driver's threads (born confined, since
    the process already is) and reserves address space far beyond any memory limit, so the limits
    come after it and count on top of it. One matrix product also loads cuBLAS. Done here, before any
    submitted code exists, the learner's calls find all of it ready.
    """
    dev = torch.device(device)
    if dev.type in ("cpu", "meta"):
        return
    x = torch.ones(8, 8, device=dev)
    (x @ x).sum()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _first_line(text: str) -> str:
    text = str(text)
    line = text.splitlines()[0] if text else ""
    return line[:_MAX_TEXT]


def _encode(value, max_numel: int, depth: int = 0):
    """What a call returned, as data that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.layout != torch.strided:
            try:
                t = t.to_dense()
            except Exception:  # noqa: BLE001
                return {"__opaque__": f"{t.layout} tensor"}
        if t.numel() > max_numel:
            return {"__oversized__": [int(n) for n in t.shape], "dtype": str(t.dtype).replace("torch.", "")}
        return torch.Tensor.clone(t.as_subclass(torch.Tensor).to("cpu"), memory_format=torch.contiguous_format)
    if value is None or type(value) in (bool, int, float, str):
        if type(value) is str:
            return value[:_MAX_TEXT]
        if type(value) is int and abs(value) > 2**62:
            return float(value)
        return value
    if isinstance(value, torch.Size):
        return tuple(int(n) for n in value)
    if type(value) in (list, tuple) and depth < _MAX_DEPTH and len(value) <= _MAX_ITEMS:
        items = [_encode(v, max_numel, depth + 1) for v in value]
        return items if type(value) is list else tuple(items)
    if type(value) is dict and depth < _MAX_DEPTH and len(value) <= _MAX_ITEMS and all(type(k) is str for k in value):
        return {k: _encode(v, max_numel, depth + 1) for k, v in value.items()}
    return {"__opaque__": type(value).__name__[:100]}


def _is_memory_error(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(t in str(exc) for t in _MEMORY_TEXTS)
    )


def _size(args, kwargs) -> int:
    return sum(a.numel() for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))


def _call_all(fn, properties, max_numel: int, events: dict) -> list[list]:
    """Call ``fn`` on every case, smallest first per property; stop calling after NotImplementedError."""
    outcomes = []
    stub = None
    for cases in properties:
        row = [None] * len(cases)
        for j in sorted(range(len(cases)), key=lambda j: _size(*cases[j])):
            if stub is not None:
                row[j] = stub
                continue
            args, kwargs = cases[j]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a warning is not a failure
                    got = fn(*[_core._fresh(a) for a in args], **{k: _core._fresh(a) for k, a in kwargs.items()})
                row[j] = ("ok", _encode(got, max_numel))
            except BaseException as exc:  # noqa: BLE001  SystemExit and KeyboardInterrupt too
                if _is_memory_error(exc):
                    events["memory"] = True
                row[j] = ("raised", type(exc).__name__[:100], _first_line(exc), isinstance(exc, NotImplementedError))
                if row[j][3]:
                    stub = row[j]
        outcomes.append(row)
    return outcomes


def _learner_callable(name: str, fn, check: str, seed: int):
    """The callable to call: ``fn``, or the wrapper the chapter's check puts around it."""
    if not check:
        return fn
    from course_lib import checks

    check_fn = getattr(checks, check)
    with _core.capture() as captured:
        if "seed" in inspect.signature(check_fn).parameters:
            check_fn(fn, seed=seed)
        else:
            check_fn(fn)
    for record in captured:
        if record.exercise.name == name:
            return record.fn
    raise LookupError(f"{check} did not check an exercise named {name!r}")


def run_job(memory_mb: int, cpu_s: int, fsize_mb: int, trusted_pickle: bool, isolation: str = "landlock") -> None:
    """Run the job in the current directory (see the module doc); always ends with os._exit."""
    torch.set_num_threads(1)
    sandbox = os.getcwd()
    results_path = os.path.join(sandbox, "results.pt")
    progress_path = os.path.join(sandbox, "progress.txt")
    job_path = os.path.join(sandbox, "job.pt")
    job = torch.load(job_path, weights_only=not trusted_pickle)  # the grader's file: no submitted code runs yet
    os.remove(job_path)
    device = str(job.get("device", "cpu"))
    # Landlock + seccomp (see course_lib.grading.confine), before the first CUDA call: the threads that
    # the CUDA driver starts are then confined too (a thread that existed before would stay unconfined)
    _confine.confine_worker(sandbox, isolation, list(job["denied"]), device)
    _prepare_device(device)
    _limit_resources(memory_mb, cpu_s, fsize_mb)
    max_numel = int(job["max_numel"])

    violations: list[str] = []
    events = {"memory": False}
    results = {"version": 1, "cells": [], "exercises": {}, "violations": violations, "events": events,
               "complete": False, "output_chars": 0}
    stdout, stderr = _CappedStream(), _CappedStream()

    def save() -> None:
        results["output_chars"] = stdout.size + stderr.size
        tmp = results_path + ".tmp"
        _save(results, tmp)
        _replace(tmp, results_path)

    def progress(text: str) -> None:
        with open(progress_path, "w", encoding="utf-8") as f:
            f.write(text)

    sys.stdout, sys.stderr = stdout, stderr
    _install_audit_hook(sandbox, list(job["denied"]), violations)

    main_module = types.ModuleType("__main__")
    main_module.__dict__.update({"__builtins__": builtins, "display": lambda *a, **k: None})
    sys.modules["__main__"] = main_module
    namespace = main_module.__dict__
    for index, source in job["cells"]:
        progress(f"cell {index}")
        try:
            code = compile(source, f"<cell {index + 1}>", "exec")
            exec(code, namespace)  # noqa: S102  the submission's own code, in this sandbox
        except BaseException as exc:  # noqa: BLE001  a cell's error stops the cell, not the notebook
            if _is_memory_error(exc):
                events["memory"] = True
            results["cells"].append((int(index), type(exc).__name__[:100], _first_line(exc)))
    save()
    for exercise in job["exercises"]:
        name = exercise["name"]
        progress(f"exercise {name}")
        fn = namespace.get(name, None)
        if name not in namespace:
            entry = {"status": "missing"}
        elif not callable(fn):
            entry = {"status": "not-callable", "type": type(fn).__name__[:100]}
        else:
            try:
                target = _learner_callable(name, fn, exercise["check"], int(exercise["seed"]))
                if device != "cpu":  # inputs moved there, outputs back to the CPU
                    target = _core.on_device(target, device)
                entry = {"status": "ok", "outcomes": _call_all(target, exercise["cases"], max_numel, events)}
            except BaseException as exc:  # noqa: BLE001
                entry = {"status": "error", "type": type(exc).__name__[:100], "message": _first_line(exc)}
        results["exercises"][name] = entry
        save()
    results["complete"] = True
    save()
    progress("done")
    os._exit(0)


def _fail(exc: BaseException) -> None:
    """The worker itself failed: say why on the real stderr (fd 2) and exit 70."""
    try:
        os.write(2, f"grading worker failed: {type(exc).__name__}: {exc}\n".encode("utf-8", "replace")[:4000])
    finally:
        os._exit(70)


# --------------------------------------------------------------------------------------------
# The fork server: import torch once, then fork a fresh sandbox process per notebook.
# --------------------------------------------------------------------------------------------


def _child(request: dict) -> None:
    """In a freshly forked process: become a session of its own in the sandbox, then run the job."""
    try:
        os.setsid()
        server_dir = os.getcwd()
        os.chdir(request["sandbox"])
        # `python -m` put the server's folder first on sys.path; a fresh worker has its sandbox there
        sys.path[:] = [request["sandbox"] if entry in ("", server_dir) else entry for entry in sys.path]
        sys.path_importer_cache.pop(server_dir, None)
        null = os.open(os.devnull, os.O_RDWR)
        err = os.open("stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)  # the server's request pipe: gone
        os.dup2(null, 1)  # the server's reply pipe: gone
        os.dup2(err, 2)
        os.close(null)
        os.close(err)
        run_job(int(request["memory"]), int(request["cpu"]), int(request["fsize"]), bool(request["trusted"]),
                str(request.get("isolation", "landlock")))
    except BaseException as exc:  # noqa: BLE001
        _fail(exc)
    os._exit(70)


def _preload() -> None:
    """What the fork server loads once, for every child to inherit instead of loading it afresh.

    - matplotlib's font list (about 0.5 s: it parses every font file), built in the server's own
      folder; a child would otherwise build it in its empty sandbox before confinement (see
      ``confine._load_font_list``, then a no-op);
    - the modules that ``torch.testing.assert_close`` imports on its first call (in torch 2.13,
      ``torch.distributed.tensor`` and sympy: about 0.8 s), which the lessons' notebooks call.
    """
    _confine._load_font_list()
    torch.testing.assert_close(torch.zeros(1), torch.zeros(1))


def serve() -> None:
    """The fork server's loop (``--server``): JSON requests on stdin, JSON replies on stdout.

    A request ``{"id", "sandbox", "memory", "cpu", "fsize", "trusted"}`` forks a child that runs
    that job exactly as a fresh ``python -m course_lib.grading.worker`` would, with torch already
    imported (by this trusted process, before any submitted code exists), which saves the ~2 s
    of ``import torch`` per notebook, and with what most notebooks load already loaded
    (:func:`_preload`). Replies: ``{"id", "pid"}`` once forked, ``{"pid", "status"}`` (the raw
    wait status) once the child has ended. When stdin closes (the grader is done or
    gone), every child's process group is killed and the server exits. The server itself never
    runs submitted code and stays single-threaded (the grader sets OMP_NUM_THREADS=1), so forking
    is safe.
    """
    import json
    import select

    _preload()
    children: set[int] = set()
    pending = b""

    def send(message: dict) -> None:
        os.write(1, (json.dumps(message) + "\n").encode())

    while True:
        ready, _, _ = select.select([0], [], [], 0.05)
        if ready:
            data = os.read(0, 1 << 16)
            if not data:
                for pid in children:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                os._exit(0)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children.add(pid)
                send({"id": request["id"], "pid": pid})
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            send({"pid": pid, "status": status})


def main(argv: list[str] | None = None) -> None:
    """``--server``: the fork server; else run the job in the current directory (``--memory MB --cpu S
    --fsize MB --trusted-pickle 0|1``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--server"]:
        serve()
        return
    options = dict(zip(argv[::2], argv[1::2]))
    run_job(int(options["--memory"]), int(options["--cpu"]), int(options["--fsize"]),
            options.get("--trusted-pickle") == "1", options.get("--isolation", "landlock"))


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # noqa: BLE001
        _fail(exc)
