"""``make gpu-check``: prove on a machine with a CUDA GPU that the course runs there and passes.

Steps (each recorded in one JSON report, build/gpu-check.json by default):

1. CUDA must be available: otherwise the script prints why and exits 2 (it never skips silently,
   and writes no report).
2. ``course_lib.get_device()`` (with ``COURSE_DEVICE`` unset) must pick CUDA.
3. The unit tests (``pytest tests/``) with ``COURSE_DEVICE=cuda``: counts of passed, failed,
   errors and skipped (from pytest's JUnit XML).
4. Every lesson notebook (notebooks/*.ipynb) executed with nbclient, ``COURSE_DEVICE=cuda`` in the
   kernel's environment: seconds per notebook, and whether every cell ran (a notebook's claims
   are asserts, so "every assert held" is "no cell raised"; the first error is recorded).
5. ``benchmarks/attention_bench.py --device cuda``: its ratios (figure, configuration, value,
   target, met).
6. ``course-grade --device cuda`` on one solution notebook: the grader calls the functions on the GPU.

Report keys (see :data:`REPORT_KEYS`): ``ok`` (every step passed), ``torch``, ``cuda`` (device
name, CUDA version), ``get_device``, ``pytest``, ``notebooks``, ``benchmark``, ``grader``,
``started`` (UTC, ISO 8601), ``seconds``. Exit status: 0 when ``ok``, 1 when a step failed,
2 when CUDA is not available.

Usage::

    make gpu-check                                   # everything (minutes on a GPU machine)
    python scripts/gpu_check.py --out build/gpu-check.json --bench-args=--quick --pytest-args="-x -q"
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT_KEYS = ("ok", "torch", "cuda", "get_device", "pytest", "notebooks", "benchmark", "grader", "started", "seconds")
NO_CUDA = "gpu-check: CUDA is not available on this machine"


def cuda_status() -> tuple[bool, str]:
    """(available, a sentence saying what was found)."""
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        return False, (f"{NO_CUDA} (torch.cuda.is_available() is False; torch {torch.__version__}, built with "
                       f"CUDA {built}); nothing was checked. Run it on a machine with an NVIDIA GPU.")
    return True, f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}"


def check_get_device() -> dict:
    """get_device() without COURSE_DEVICE must pick CUDA."""
    from course_lib import get_device

    saved = os.environ.pop("COURSE_DEVICE", None)
    try:
        device = get_device()
    finally:
        if saved is not None:
            os.environ["COURSE_DEVICE"] = saved
    return {"device": str(device), "ok": device.type == "cuda"}


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run_pytest(args: list[str]) -> dict:
    """pytest tests/ with COURSE_DEVICE=cuda; the counts from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        xml_path = Path(tmp) / "junit.xml"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "tests/", *args, f"--junitxml={xml_path}"],
                              cwd=ROOT, env=_env(COURSE_DEVICE="cuda"), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        counts = parse_junit(xml_path.read_text(encoding="utf-8")) if xml_path.exists() else {}
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"returncode": done.returncode, "seconds": round(seconds, 1), **counts, "failed_tests": failed[:50],
            "tail": done.stdout[-3000:], "ok": done.returncode == 0 and counts.get("failed", 1) == 0
            and counts.get("errors", 1) == 0}


def parse_junit(text: str) -> dict:
    """passed / failed / errors / skipped counts from a pytest JUnit XML report."""
    root = ET.fromstring(text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return {"tests": total["tests"], "passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
            "failed": total["failures"], "errors": total["errors"], "skipped": total["skipped"]}


def run_notebook(path: Path, timeout: int) -> dict:
    """Execute one notebook on CUDA (COURSE_DEVICE=cuda in the kernel's environment)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert_cells = sum("assert" in c.source for c in code_cells)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    error = None
    try:
        client.execute(env=_env(COURSE_DEVICE="cuda"))
    except CellExecutionError as exc:
        error = {"ename": exc.ename, "evalue": str(exc.evalue)[:500]}
    except Exception as exc:  # noqa: BLE001  a timeout or a dead kernel is a failure of this notebook
        error = {"ename": type(exc).__name__, "evalue": str(exc)[:500]}
    seconds = time.perf_counter() - started
    if error is not None:
        error.update(_failed_cell(nb))
    ran = sum(1 for c in code_cells if c.get("execution_count") is not None)
    return {"notebook": path.name, "seconds": round(seconds, 1), "code_cells": len(code_cells), "cells_run": ran,
            "assert_cells": assert_cells, "all_asserts_held": error is None, "error": error, "ok": error is None}


def run_notebooks(paths: list[Path], timeout: int, jobs: int = 1, echo=print) -> list[dict]:
    """:func:`run_notebook` on each path, ``jobs`` kernels at a time; the results in the order of ``paths``.

    Each notebook has its own kernel process, so running several at once is safe; their seconds then
    include the sharing of the GPU and the CPU cores.
    """
    if jobs < 1:
        raise ValueError(f"run_notebooks: jobs must be >= 1, got {jobs}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_notebook, path, timeout) for path in paths]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            echo(f"  {result['notebook']}: {'ok' if result['ok'] else 'FAILED ' + str(result['error'])} "
                 f"({result['seconds']} s)")
        return [future.result() for future in futures]


def _failed_cell(nb) -> dict:
    """Where a notebook failed: the index of the first cell with an error output (in ``nb.cells``) and the
    end of its traceback, without terminal colours (it holds the failing line, which a bare assert's
    empty message does not)."""
    from nbconvert.filters import strip_ansi

    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                return {"cell": index, "traceback": strip_ansi("\n".join(output.get("traceback", [])))[-1500:]}
    return {}


def run_benchmark(args: list[str]) -> dict:
    """benchmarks/attention_bench.py --device cuda; its rows (ratios)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "benchmarks/attention_bench.py", "--device", "cuda", "--json", str(out),
                               *args], cwd=ROOT, env=_env(), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        table = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    rows = [{k: row.get(k) for k in ("figure", "config", "value", "target", "meets_target")} for row in table.get("rows", [])]
    return {"returncode": done.returncode, "seconds": round(seconds, 1), "header": table.get("header"), "ratios": rows,
            "tail": (done.stdout + done.stderr)[-2000:], "ok": done.returncode == 0 and bool(rows)}


def run_grader(notebook: Path) -> dict:
    """course-grade --device cuda on one solution notebook: it must score full marks."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "course_lib.grading", str(notebook), "--out", tmp, "--device",
                               "cuda", "--jobs", "1", "--no-progress"], cwd=ROOT, env=_env(), capture_output=True,
                              text=True)
        grades = Path(tmp) / "grades.csv"
        rows = list(csv.DictReader(grades.open(newline="", encoding="utf-8"))) if grades.exists() else []
    row = rows[0] if rows else {}
    full = bool(row) and row.get("status") == "ok" and row.get("total") == row.get("max")
    return {"notebook": notebook.name, "returncode": done.returncode, "status": row.get("status"),
            "reason": row.get("reason"), "total": row.get("total"), "max": row.get("max"),
            "tail": (done.stdout + done.stderr)[-2000:], "ok": done.returncode == 0 and full}


def build_report(*, torch_version: str, cuda: str, get_device: dict, pytest: dict | None, notebooks: list[dict],
                 benchmark: dict | None, grader: dict | None, started: float, seconds: float) -> dict:
    """The JSON report: every key of :data:`REPORT_KEYS`; ``ok`` is True when every step that ran passed.

    A step given as None was not asked for (``--no-tests``, ``--no-bench``, ``--no-grader``) and is
    recorded as ``{"ran": false}``, never as passed.
    """
    steps = {"pytest": pytest, "benchmark": benchmark, "grader": grader}
    ok = get_device.get("ok", False) and all(s is None or s.get("ok") for s in steps.values()) and all(
        n.get("ok") for n in notebooks)
    def ran(step):
        return {"ran": False} if step is None else {"ran": True, **step}

    report = {
        "ok": bool(ok),
        "torch": torch_version,
        "cuda": cuda,
        "get_device": get_device,
        "pytest": ran(pytest),
        "notebooks": {"count": len(notebooks), "passed": sum(bool(n.get("ok")) for n in notebooks),
                      "seconds": round(sum(n.get("seconds", 0) for n in notebooks), 1), "each": notebooks},
        "benchmark": ran(benchmark),
        "grader": ran(grader),
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }
    return report


def write_report(report: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-check.json", help="the JSON report")
    parser.add_argument("--notebooks", nargs="*", type=Path, default=None,
                        help="notebooks to run (default: every notebooks/*.ipynb)")
    parser.add_argument("--notebook-timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument("--notebook-jobs", type=int, default=1,
                        help="notebooks run at once, each in its own kernel (default 1: one after another)")
    parser.add_argument("--pytest-args", default="-q -p no:randomly", help="extra pytest arguments, one string")
    parser.add_argument("--bench-args", default="", help="extra attention_bench.py arguments, e.g. --quick")
    parser.add_argument("--no-tests", action="store_true", help="do not run the unit tests (recorded as not run)")
    parser.add_argument("--no-bench", action="store_true", help="do not run the benchmark (recorded as not run)")
    parser.add_argument("--no-grader", action="store_true", help="do not run the grader (recorded as not run)")
    args = parser.parse_args(argv)

    available, what = cuda_status()
    if not available:
        print(what, file=sys.stderr)
        return 2
    import torch

    started = time.time()
    print(f"gpu-check on {what}", flush=True)
    get_device = check_get_device()
    print(f"get_device() -> {get_device['device']}", flush=True)
    pytest = None
    if not args.no_tests:
        print("unit tests with COURSE_DEVICE=cuda ...", flush=True)
        pytest = run_pytest(shlex.split(args.pytest_args))
        print(f"  {pytest.get('passed')} passed, {pytest.get('failed')} failed, {pytest.get('errors')} errors, "
              f"{pytest.get('skipped')} skipped in {pytest['seconds']} s", flush=True)
    paths = args.notebooks if args.notebooks is not None else sorted((ROOT / "notebooks").glob("*.ipynb"))
    notebooks = run_notebooks([path.resolve() for path in paths], args.notebook_timeout, args.notebook_jobs,
                              echo=lambda line: print(line, flush=True))
    benchmark = None
    if not args.no_bench:
        print("benchmarks/attention_bench.py --device cuda ...", flush=True)
        benchmark = run_benchmark(shlex.split(args.bench_args))
    grader = None
    if not args.no_grader:
        solution = sorted((ROOT / "solutions").glob("*.ipynb"))[0]
        print(f"course-grade --device cuda {solution.name} ...", flush=True)
        grader = run_grader(solution)
    report = build_report(torch_version=torch.__version__, cuda=what, get_device=get_device, pytest=pytest,
                          notebooks=notebooks, benchmark=benchmark, grader=grader, started=started,
                          seconds=time.time() - started)
    path = write_report(report, args.out)
    print(f"gpu-check {'passed' if report['ok'] else 'FAILED'}; wrote {path}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
