"""``course-grade``: the command line and :func:`grade`, which ties discovery, the sandbox, scoring and reports together."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path



from .confine import ISOLATION_CHOICES, ConfinementUnavailable, resolve_isolation
from .discovery import _one_line, discover_chapters, find_submissions
from .gradescope import write_results
from .layouts import LAYOUTS
from .lms import LMS_CHOICES, write_lms
from .integrity import PACKAGE, PackageChanged, changed_files, snapshot
from .output import OutputNotEmpty, check_output, write_output
from .report import write_feedback, write_grades
from .roster import absent_student, apply_roster, read_roster
from .sandbox import ForkServer, Settings, WorkerUnavailable, preflight
from .scoring import Row, grade_submission
from .summary import run_record, summary_text, write_run_record
from .settings import DEFAULT_MEMORY_MB, DEFAULT_SEED, DEFAULT_TIMEOUT, MIN_MEMORY_MB, ROOT


# --------------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------------


def grade(submissions: list[Path], out: Path, *, timeout: int = DEFAULT_TIMEOUT, memory: int = DEFAULT_MEMORY_MB,
          jobs: int = 1, seed: int = DEFAULT_SEED, solutions: Path | None = None, progress: bool = True,
          fork_server: bool = True, isolation: str = "auto", output_format: str = "csv",
          package: Path | None = None, device: str = "cpu", force: bool = False,
          roster: Path | None = None, layout: str = "auto", lms: str | None = None) -> list[Row]:
    """Grade every submission and write ``out/grades.csv``, ``out/feedback/``, ``out/summary.md`` and ``out/run.json``.

    Args:
        submissions: notebooks and folders (see the module doc).
        out: the output folder (created).
        timeout: wall-clock seconds per notebook (also its CPU-time limit).
        memory: memory limit per notebook, in MB, on top of what the worker holds once torch (and on a GPU the
            CUDA context) is loaded (data segment; address space gets 1 GB more).
        jobs: notebooks graded in parallel.
        seed: the instructor's seed for the grader's inputs.
        solutions: the folder of solution notebooks that defines the chapters (default: the course's).
        progress: show a progress bar on stderr.
        fork_server: fork each sandbox process from one that has imported torch already (about 2 s
            saved per notebook); False starts a fresh Python process for each notebook.
        isolation: "auto" or "landlock": the operating system confines each worker (Landlock and
            seccomp, :mod:`course_lib.grading.confine`); "none": only the Python audit hook and
            resource limits (native code can then read solutions/: use it knowingly).
        output_format: "csv" (grades.csv and feedback/) or "gradescope" (results.json, one submission).
        package: the folder whose sha256 is compared before and after the batch (default: course_lib).
        device: where the learner's functions are called, "cpu" (default) or "cuda": the inputs
            are moved there and the outputs must come back there (a function that creates tensors
            without ``device=`` fails on "cuda"); the outputs are judged on the CPU either way.
        force: replace the contents of an ``out`` that holds files (as one unit, :mod:`.output`);
            without it such a folder is refused (csv format; gradescope writes results.json in place).
        roster: a CSV mapping submissions to LMS student ids (:mod:`.roster`); its students without
            a submission get a ``no-submission`` row.
        layout: how a SUB folder is read: "auto" (nbgrader's ``submitted/`` or exchange ``inbound/``
            layout when the folder is or holds one, else folders), "folders" or "nbgrader" (:mod:`.layouts`).
        lms: also write that LMS's gradebook import: "canvas" writes ``out/canvas.csv`` (:mod:`.lms`).
    Returns:
        the rows, sorted by student and notebook.
    Raises:
        ConfinementUnavailable: if isolation is "auto" or "landlock" and the kernel has no Landlock.
        OutputNotEmpty: if ``out`` holds files, ``force`` is False and the format is csv (nothing graded).
        ValueError: for a roster file that cannot be read (:func:`.roster.read_roster`).
        PackageChanged: when ``package`` changed during the batch, after the output was written
            (the changed files are named in the message, in a last grades.csv row, or in results.json).
        ValueError: for an unknown ``output_format``, ``layout`` or ``lms``; for layout "nbgrader" and
            a folder that is not nbgrader's; if device is not "cpu" or "cuda", or is
            "cuda" and CUDA is not available.
        WorkerUnavailable: on a device other than "cpu", when a worker with an empty job does not finish
            (CUDA could not start inside the confinement, say); raised before any notebook is graded.
    """
    if output_format not in ("csv", "gradescope"):
        raise ValueError(f"output_format must be 'csv' or 'gradescope', got {output_format!r}")
    from tqdm import tqdm

    _check_grading_device(device)
    if lms is not None and lms not in LMS_CHOICES:
        raise ValueError(f"lms must be one of {LMS_CHOICES}, got {lms!r}")
    isolation = resolve_isolation(isolation)  # before any work: refuse early, with what to do
    if output_format == "csv":
        check_output(out.resolve(), force)
    entries = read_roster(roster) if roster is not None else []
    warnings.filterwarnings("ignore", module="nbformat")
    package = (package or PACKAGE).resolve()
    before = snapshot(package)
    solutions = (solutions or ROOT / "solutions").resolve()
    out = out.resolve()
    chapters = discover_chapters(solutions, seed)
    for chapter in chapters.values():  # an exercise no check grades earns nobody a point: say so
        for warning in chapter.warnings:
            print(f"course-grade: warning: {warning}", file=sys.stderr)
    subs = find_submissions(submissions, exclude=[out], layout=layout)
    absent = apply_roster(entries, subs)
    labels = {str(p.resolve()): "<submissions>" for p in submissions}
    labels.update({str(solutions): "<solutions>", str(out): "<output>"})
    if roster is not None:  # the class list is no submission's business
        labels[str(roster.resolve())] = "<roster>"
    workspace = tempfile.mkdtemp(prefix="course-grade-run-")  # sandboxes in here; each may read only its own
    labels[workspace] = "<sandboxes>"
    settings = Settings(timeout, memory, seed, sorted(labels), labels, workspace, isolation=isolation, device=device)
    rows: list[Row] = []
    try:
        if fork_server and subs:
            settings.server = ForkServer(workspace, device)
        if device != "cpu" and subs:
            preflight(settings)  # CUDA inside the confined worker depends on the machine: fail once, clearly
        with tqdm(total=len(subs), desc="course-grade", unit="notebook", file=sys.stderr,
                  disable=not progress) as bar, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(grade_submission, sub, chapters, settings): sub for sub in subs}
            for future in as_completed(futures):
                try:
                    rows.append(future.result())
                except Exception as exc:  # noqa: BLE001  grade_submission catches everything; belt and braces
                    sub = futures[future]
                    rows.append(Row(sub.student, sub.notebook, status="grader-error", lms_id=sub.lms_id,
                                    reasons=[f"grader error: {type(exc).__name__}: {_one_line(exc)}"]))
                bar.update(1)
    finally:
        if settings.server is not None:
            settings.server.close()
        shutil.rmtree(workspace, ignore_errors=True)
    rows += [Row(absent_student(e), "", status="no-submission", lms_id=e.lms_id,
                 reasons=["no notebook from this student in the submissions"]) for e in absent]
    rows.sort(key=lambda r: (r.student, r.notebook))
    changed = changed_files(before, snapshot(package))
    problem = PackageChanged(package, changed, rows) if changed else None
    if output_format == "gradescope":
        out.mkdir(parents=True, exist_ok=True)
        write_results(rows, out / "results.json", problem=str(problem) if problem else "")
    else:
        alarm = [Row("<grader>", "", status="grader-error", reasons=[str(problem)])] if problem else []
        record = run_record(rows, chapters, seed=seed, package_sha256=before.digest, settings={
            "timeout_s": timeout, "memory_mb": memory, "jobs": jobs, "device": device, "isolation": isolation,
            "fork_server": fork_server, "roster": roster.name if roster is not None else None,
            "layout": layout, "lms": lms})

        def write(folder: Path) -> None:
            write_grades(rows + alarm, chapters, folder / "grades.csv")
            write_feedback(rows, folder / "feedback")
            (folder / "summary.md").write_text(summary_text(rows, chapters), encoding="utf-8")
            write_run_record(folder / "run.json", record)
            if lms is not None:
                write_lms(lms, rows, chapters, folder)

        write_output(out, write)
    if problem is not None:
        raise problem
    return rows


GRADING_DEVICES = ("cpu", "cuda")  # meta is not one: a grade needs values, and meta tensors have none


def _check_grading_device(device: str) -> None:
    """Raise ValueError unless ``device`` is a device the grader can call the learner's functions on."""
    if device not in GRADING_DEVICES:
        raise ValueError(f"device must be one of {GRADING_DEVICES}, got {device!r} (the meta device has no values "
                         f"to grade; check shapes on meta with check_<exercise>(fn, device='meta') in a notebook)")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but CUDA is not available on this machine "
                             "(torch.cuda.is_available() is False); grade with --device cpu")


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
                        help=f"memory limit per notebook in MB, on top of torch itself (default {DEFAULT_MEMORY_MB}, "
                             f"at least {MIN_MEMORY_MB})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="notebooks graded in parallel (default: the number of CPUs)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the grader's inputs; keep yours private (default {DEFAULT_SEED})")
    parser.add_argument("--format", choices=("csv", "gradescope"), default="csv", dest="output_format",
                        help="csv: grades.csv and feedback/ (default); gradescope: results.json for one submission")
    parser.add_argument("--device", choices=GRADING_DEVICES, default="cpu",
                        help="where the learners' functions run: cpu (default) or cuda (refused when CUDA is not "
                             "available); results are judged on the CPU either way")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help=argparse.SUPPRESS)
    parser.add_argument("--package", type=Path, default=PACKAGE, help=argparse.SUPPRESS)  # the folder hashed
    parser.add_argument("--force", action="store_true",
                        help="replace the contents of an --out folder that holds files (refused without it)")
    parser.add_argument("--roster", type=Path, metavar="FILE",
                        help="CSV with columns submission,lms_id[,name]: fills grades.csv's lms_id column and "
                             "adds a no-submission row per roster student who sent nothing (Canvas and Moodle "
                             "download names are read)")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto",
                        help="how a SUB folder is read: auto (default: nbgrader's layout when the folder is or holds "
                             "submitted/ (submitted/<student>/<assignment>/*.ipynb) or an exchange's inbound/ "
                             "(<student>+<assignment>+<timestamp>/, the latest of each), else folders), folders, "
                             "or nbgrader (refuse a folder that is not nbgrader's)")
    parser.add_argument("--lms", choices=LMS_CHOICES,
                        help="also write an LMS gradebook import: canvas writes canvas.csv (Canvas's gradebook CSV: "
                             "a column per chapter, a Points Possible row, a row per student keyed by the "
                             "roster's lms_id as the Canvas user ID; use it with --roster)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--isolation", choices=ISOLATION_CHOICES, default="auto",
                        help="how each worker is confined: auto (the strongest layer the kernel offers: Landlock "
                             "+ seccomp), landlock, or none (resource limits and an audit hook only; native code "
                             "can read solutions/: use it knowingly, or run the container recipe in the README)")
    args = parser.parse_args(argv)
    for path in args.submissions:
        if not path.exists():
            parser.error(f"no such file or folder: {path}")
        if path.is_file() and path.suffix != ".ipynb":
            parser.error(f"not a notebook (.ipynb): {path}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out is a file, not a folder: {args.out}")
    if args.output_format == "csv":
        try:
            check_output(args.out.resolve(), args.force)
        except OutputNotEmpty as exc:
            parser.error(str(exc))
    if args.roster is not None:
        try:
            read_roster(args.roster)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            parser.error(f"--roster: {exc}")
    if args.timeout < 1:
        parser.error("--timeout must be at least 1 second")
    if args.memory < MIN_MEMORY_MB:
        parser.error(f"--memory must be at least {MIN_MEMORY_MB} MB (a lesson's plots and tensors need about that)")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    try:
        _check_grading_device(args.device)
    except ValueError as exc:
        parser.error(f"--device {args.device}: {exc}")  # exit status 2
    if not args.solutions.is_dir():
        parser.error(f"no solutions folder at {args.solutions} (run course-grade from the course checkout)")
    out = args.out.resolve()
    try:
        found = find_submissions(args.submissions, exclude=[out], layout=args.layout)
    except ValueError as exc:
        parser.error(f"--layout {args.layout}: {exc}")
    if not found:
        if args.output_format == "gradescope":  # Gradescope shows the student this instead of a bare failure
            out.mkdir(parents=True, exist_ok=True)
            write_results([], out / "results.json")
            print(f"no notebooks found; wrote {out / 'results.json'}")
            return 0
        parser.error("no notebooks found in " + ", ".join(str(p) for p in args.submissions))
    try:
        resolve_isolation(args.isolation)
    except ConfinementUnavailable as exc:
        print(f"course-grade: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        rows = grade(args.submissions, args.out, timeout=args.timeout, memory=args.memory, jobs=args.jobs,
                     seed=args.seed, solutions=args.solutions, progress=not args.no_progress,
                     isolation=args.isolation, output_format=args.output_format, package=args.package,
                     device=args.device, force=args.force, roster=args.roster, layout=args.layout,
                     lms=args.lms)
    except PackageChanged as exc:
        rows, status = exc.rows, 3
        print(f"course-grade: INTEGRITY FAILURE: {exc}", file=sys.stderr)
    except WorkerUnavailable as exc:
        print(f"course-grade: {exc}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    absent = counts.pop("no-submission", 0)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    summary += f"; {absent} roster student(s) without a submission" if absent else ""
    wrote = f"{out / 'results.json'}" if args.output_format == "gradescope" else \
        f"{out / 'grades.csv'}, {out / 'feedback'}/, summary.md, run.json" + (f" and {args.lms}.csv" if args.lms else "")
    print(f"graded {len(rows) - absent} notebook(s): {summary}; wrote {wrote}")
    if status:
        print("course-grade: the course_lib package changed during grading; see the message above "
              "and the last row of the output", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
