"""The class summary (summary.md) and the record of the run (run.json).

summary.md is for the instructor: per chapter, the mean and median score, the average of each
exercise, and the mistakes the checks diagnosed most often across the class, with how many
notebooks made each ("what to go over next session"), then the properties failed most often.
It names no student. run.json records how the grades were made: the date (UTC, ISO 8601), the
seed, the course's version and git commit, the grader's version and the sha256 of its package,
each chapter's exercise version, the settings, and the warnings about exercises no check grades.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ..checks import core

from .discovery import Chapter
from .scoring import Row
from .settings import ROOT, STATUS_ORDER

TOP = 10  # rows of the "failed most often" tables


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no pipe."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _points(value: float) -> str:
    return f"{value:.2f}"


def summary_text(rows: list[Row], chapters: dict[str, Chapter]) -> str:
    """summary.md: the class at a glance (see the module doc). Deterministic: the same rows, the same text."""
    out = ["# Class summary", ""]
    notebooks = [r for r in rows if r.status != "no-submission"]
    students = {r.student for r in notebooks}
    out.append(f"{len(notebooks)} notebook(s) from {len(students)} submission(s).")
    percents = [r.percent for r in notebooks if r.percent is not None]
    if percents:
        out.append(f"Over every chapter: mean {statistics.fmean(percents):.1f}%, median "
                   f"{statistics.median(percents):.1f}% of the points available.")
    counts = Counter(r.status for r in rows)
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    out += ["", "| status | notebooks |", "|---|---:|"]
    out += [f"| {_md(s)} | {n} |" for s, n in sorted(counts.items(), key=lambda kv: (order.get(kv[0], -1), kv[0]))]
    out.append("")
    for name in sorted({r.chapter for r in notebooks if r.chapter in chapters}):
        out += _chapter_section(name, [r for r in notebooks if r.chapter == name], chapters[name])
    out += _mistakes_section(notebooks)
    return "\n".join(out).rstrip("\n") + "\n"


def _chapter_section(name: str, rows: list[Row], chapter: Chapter) -> list[str]:
    most = chapter.max_points
    totals = [r.total for r in rows]
    mean, median = statistics.fmean(totals), statistics.median(totals)

    def share(x: float, of: float) -> str:
        return f"{100 * x / of:.1f}%" if of else "-"

    out = [f"## {name}", "",
           f"{len(rows)} notebook(s); every status counts (a notebook that ran out of time or was not "
           "attempted scores what it earned, often 0).", "",
           f"- Mean: {_points(mean)} / {_points(most)} ({share(mean, most)})",
           f"- Median: {_points(median)} / {_points(most)} ({share(median, most)})",
           f"- Not attempted: {sum(r.status == 'not-attempted' for r in rows)}", "",
           "| exercise | average | max | average % | full marks |", "|---|---:|---:|---:|---:|"]
    for graded in chapter.exercises:
        ex = graded.exercise.name
        earned = [g.earned for r in rows for g in r.grades if g.name == ex]
        average = statistics.fmean(earned) if earned else 0.0
        full = sum(e >= graded.points - 1e-9 for e in earned) if graded.points else 0
        out.append(f"| {_md(ex)} | {_points(average)} | {_points(graded.points)} | {share(average, graded.points)} "
                   f"| {full} of {len(earned)} |")
    out.append("")
    return out


def _mistakes_section(rows: list[Row]) -> list[str]:
    diagnosed: Counter = Counter()
    failed: Counter = Counter()
    messages: dict[tuple[str, str, str], str] = {}
    for row in rows:
        for g in row.grades:
            if g.report is None or g.state != "graded":
                continue
            for key in g.report.diagnoses:
                diagnosed[(row.chapter, g.name, key)] += 1
                messages[(row.chapter, g.name, key)] = core.diagnosis_message(g.exercise, key)
            for result in g.report.results:
                if not result.passed:
                    failed[(row.chapter, g.name, result.title)] += 1
    out = ["## What to go over next session", "",
           "Mistakes the checks recognised, by how many notebooks made them:", ""]
    if diagnosed:
        out += ["| notebooks | chapter | exercise | mistake | what the feedback says |", "|---:|---|---|---|---|"]
        for (chapter, ex, key), n in sorted(diagnosed.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"| {n} | {_md(chapter)} | {_md(ex)} | {_md(key)} | {_md(messages[(chapter, ex, key)])} |")
    else:
        out.append("No known mistake was diagnosed.")
    out += ["", f"Properties failed most often (the first {TOP}):", ""]
    if failed:
        out += ["| notebooks | chapter | exercise | property |", "|---:|---|---|---|"]
        for (chapter, ex, title), n in sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]:
            out.append(f"| {n} | {_md(chapter)} | {_md(ex)} | {_md(title)} |")
    else:
        out.append("None.")
    out.append("")
    return out


def course_version() -> str:
    """The installed course's version (the attention-course distribution's metadata), or "" when not installed."""
    try:
        return metadata.version("attention-course")
    except metadata.PackageNotFoundError:
        return ""


def git_commit(folder: Path = ROOT) -> str | None:
    """The course checkout's commit (with "-dirty" when it has uncommitted changes), or None.

    Runs the local ``git`` only (no network); None without git or outside a repository.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=20)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def run_record(rows: list[Row], chapters: dict[str, Chapter], *, seed: int, package_sha256: str,
               settings: dict, now: datetime | None = None) -> dict:
    """The contents of run.json (see the module doc)."""
    now = now or datetime.now(timezone.utc)
    counts = Counter(r.status for r in rows)
    return {
        "date": now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seed": seed,
        "course": {"version": course_version(), "git_commit": git_commit()},
        "grader": {"name": "course-grade", "version": course_version(), "package_sha256": package_sha256},
        "exercise_versions": {name: c.version for name, c in sorted(chapters.items())},
        "settings": settings,
        "warnings": [w for _, c in sorted(chapters.items()) for w in c.warnings],
        "notebooks": sum(n for s, n in counts.items() if s != "no-submission"),
        "statuses": dict(sorted(counts.items())),
    }


def write_run_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
