"""Gradescope's ``results.json`` for one submission: a test per exercise, the feedback as its output.

Gradescope runs ``run_autograder`` on one student's upload (``/autograder/submission``) and reads
``/autograder/results/results.json``: a top-level ``score``, an ``output`` shown above the tests,
and ``tests``, each with ``name``, ``score``, ``max_score``, ``output`` and ``visibility``
(Gradescope autograder specifications, "Output format"). ``make gradescope`` builds the zip
(:mod:`course_lib.authoring.gradescope`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .report import exercise_lines
from .scoring import Row

VISIBILITY = "visible"  # the feedback never shows the reference or the hidden inputs (see report.py)


def results(rows: list[Row], problem: str = "") -> dict:
    """The results.json object for the rows of one submission (every notebook it holds).

    Args:
        rows: the graded notebooks of one submission, in order.
        problem: a grader-side failure to show above the tests (e.g. the package changed).
    Returns:
        a dict in Gradescope's schema; ``score`` is the sum of the tests' scores.
    """
    tests = []
    summary = []
    for row in rows:
        where = row.chapter or "unknown chapter"
        summary.append(f"{row.notebook}: {where}, status {row.status}"
                       + (f" ({'; '.join(row.reasons)})" if row.reasons else ""))
        summary += [f"  {alert.replace('**', '')}" for alert in row.alerts]  # a syntax error, an old version
        if not row.grades:
            tests.append({"name": f"{where}: {row.notebook}", "score": 0.0, "max_score": 0.0,
                          "output": f"not graded: {row.status}" + (f": {'; '.join(row.reasons)}" if row.reasons else ""),
                          "visibility": VISIBILITY, "status": "failed"})
        for g in row.grades:
            earned = round(g.earned, 2)
            output = "\n".join(exercise_lines(g))
            if row.status != "ok":
                output = f"Notebook status: {row.status}: {'; '.join(row.reasons)}\n\n{output}"
            tests.append({"name": f"{where}: {g.name}", "score": earned, "max_score": float(g.points),
                          "output": output, "visibility": VISIBILITY,
                          "status": "passed" if earned >= g.points else "failed"})
    if not rows:
        summary.append("No notebook (.ipynb) found in the submission: upload your exercise notebooks.")
    if problem:
        summary.insert(0, f"GRADER INTEGRITY FAILURE, ask your instructor: {problem}")
    return {
        "score": round(sum(t["score"] for t in tests), 2),
        "output": "\n".join(summary),
        "visibility": VISIBILITY,
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def write_results(rows: list[Row], path: Path, problem: str = "") -> None:
    """Write :func:`results` to ``path`` (UTF-8 JSON, keys in a stable order)."""
    path.write_text(json.dumps(results(rows, problem), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
