"""Throughput, memory and diagnosis hit rate of ``course-grade`` on a generated class.

The class (at least 30 notebooks) mixes good submissions (the solution notebooks), unfilled
exercise notebooks, buggy ones (one known mistake each) and hostile ones (infinite loop, memory
blow-up, segfault, os._exit, monkeypatching, reading the solutions, ...), all built by
tests/grading_fixtures.py from the chapters that exist. The grader runs in this process, so
``getrusage`` gives its own peak memory (RUSAGE_SELF) and the largest sandbox worker's
(RUSAGE_CHILDREN).

Usage::

    .venv/bin/python benchmarks/grade_throughput.py [--jobs 2] [--timeout 20] [--copies 1] [--no-fork-server]

Not part of the test suite (it takes a minute or more).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import grading_fixtures as fx  # noqa: E402

from course_lib.grading import grade  # noqa: E402


def build_class(folder: Path, out: Path, copies: int) -> tuple[dict, dict]:
    """Write the class; return ({buggy student: (chapter, exercise, key)}, {hostile student: status})."""
    buggy: dict = {}
    hostile: dict = {}
    for copy in range(copies):
        sub = folder / f"group{copy}"
        for name in fx.chapters():
            fx.write(fx.solution(name), sub / f"good_{name}.ipynb")
            if (fx.EXERCISES / f"{name}.ipynb").exists():
                fx.write(fx.exercise(name), sub / f"unfilled_{name}.ipynb")
        buggy.update({f"{s}@{copy}": v for s, v in fx.buggy_notebooks(sub).items()})
        hostile.update({f"{s}@{copy}": v for s, v in fx.hostile_notebooks(sub, out).items()})
    return buggy, hostile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=20)
    parser.add_argument("--memory", type=int, default=2048)
    parser.add_argument("--copies", type=int, default=1, help="how many times to repeat the class")
    parser.add_argument("--no-fork-server", action="store_true", help="start a fresh Python process per notebook")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        root = Path(tmp)
        buggy, hostile = build_class(root / "class", root / "out", args.copies)
        groups = sorted((root / "class").iterdir())
        n = sum(1 for _ in (root / "class").rglob("*.ipynb"))
        start = time.perf_counter()
        rows = grade(groups, root / "out", timeout=args.timeout, memory=args.memory, jobs=args.jobs, seed=1,
                     fork_server=not args.no_fork_server)
        elapsed = time.perf_counter() - start
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    named = exclusive = 0
    for row in rows:
        intended = buggy.get(f"{row.student}@{row.notebook.split('/')[0].removeprefix('group')}")
        if intended is None:
            continue
        _, exercise, key = intended
        report = next(g.report for g in row.grades if g.name == exercise)
        named += key in report.diagnoses
        exclusive += report.diagnoses == [key]
    wrong_status = [r.student for r in rows
                    if f"{r.student}@{r.notebook.split('/')[0].removeprefix('group')}" in hostile
                    and r.status != hostile[f"{r.student}@{r.notebook.split('/')[0].removeprefix('group')}"]]
    mode = "fresh process per notebook" if args.no_fork_server else "fork server"
    print(f"notebooks graded:       {len(rows)} (of {n}), --jobs {args.jobs}, --timeout {args.timeout} s, {mode}, "
          f"{sys.platform}, {len(__import__('os').sched_getaffinity(0))} CPUs")
    print(f"statuses:               {dict(sorted(Counter(r.status for r in rows).items()))}")
    print(f"wall time:              {elapsed:.1f} s  ->  {len(rows) / elapsed * 60:.1f} notebooks/minute")
    print(f"grader peak RSS:        {self_mb:.0f} MB (this process); largest worker: {child_mb:.0f} MB")
    print(f"diagnosis hit rate:     {named}/{len(buggy)} buggy notebooks named their mistake "
          f"({exclusive}/{len(buggy)} named only it)")
    print(f"hostile, wrong status:  {wrong_status or 'none'}")


if __name__ == "__main__":
    main()
