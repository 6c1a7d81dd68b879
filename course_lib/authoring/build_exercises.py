"""Generate the student notebooks in exercises/ from their single source in solutions/.

In a solution notebook, the code a student must write sits between two marker lines inside a
function (or method) body::

    def softmax(x, dim=-1):
        ### BEGIN SOLUTION
        shifted = x - x.amax(dim=dim, keepdim=True)
        ...
        ### END SOLUTION

The generator replaces each region (markers included) with one line at the marker's
indentation, ``raise NotImplementedError("...")``, clears every output and execution count,
and drops cells tagged ``solution-only``. The result still runs top to bottom: defining a
function that raises is harmless, and the check cell after it reports "not implemented yet".

Each exercise notebook's metadata says where it comes from and which version of the exercise it
is: ``course.generated_from`` (``solutions/NN_topic.ipynb``) and ``course.version``, a short hash
of the task cells (the code cells with a solution region, as the learner gets them) and of the
check functions the notebook calls (:func:`exercise_version`). The batch grader computes the same
hash from solutions/ and flags a submission made from another version.

Usage::

    python -m course_lib.authoring.build_exercises            # write exercises/
    python -m course_lib.authoring.build_exercises --check    # exit 1 if exercises/ is stale

Every exercise should be graded by a check of ``course_lib.checks``: the command prints a warning
on stderr for each one that is not (:func:`ungraded_exercises`), and so does ``course-grade``.

Raises ``ValueError`` (exit 2 from the command line) for an unmatched marker or a region at the
top level of a cell, which would make the exercise notebook fail to run.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: write your code here, then run the check cell below.")'
SOLUTION_ONLY_TAG = "solution-only"
# The Colab/Binder links that notebook_setup.write_badges puts in a first markdown cell; an
# exercise's links open the exercise, not the solution it is made from.
BADGES_BEGIN, BADGES_END = "<!-- badges -->", "<!-- /badges -->"
BADGES = re.compile(re.escape(BADGES_BEGIN) + ".*?" + re.escape(BADGES_END), re.S)
ROOT = Path(__file__).resolve().parents[2]


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION region of a code cell's source with a stub line.

    Args:
        source: the cell's source code.
        where: a description for error messages (notebook and cell number).
    Returns:
        the source with every region replaced by ``raise NotImplementedError(...)``.
    Raises:
        ValueError: for an END without BEGIN, a BEGIN without END, nested regions, or a region
            that is not indented (top-level code would stop the exercise notebook).
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: nested {BEGIN!r}")
            indent = line[: len(line) - len(line.lstrip())]
            if not indent:
                raise ValueError(
                    f"{where}, line {number}: a solution region must be inside a function body "
                    f"(indented), or the exercise notebook could not run top to bottom"
                )
            out.append(indent + STUB)
            inside = True
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN!r} without {END!r}")
    return "\n".join(out)


def _has_region(source: str) -> bool:
    return any(line.strip() == BEGIN for line in source.splitlines())


def task_cells(solution: nbformat.NotebookNode, name: str = "notebook") -> list[str]:
    """The task cells of a solution notebook as the learner gets them: every code cell holding a
    solution region, with the region replaced by the stub (:func:`strip_solutions`), in order.

    Raises:
        ValueError: as :func:`strip_solutions`.
    """
    return [strip_solutions(cell.source, f"{name}, cell {index}") for index, cell in enumerate(solution.cells)
            if cell.cell_type == "code" and _has_region(cell.source)
            and SOLUTION_ONLY_TAG not in cell.get("metadata", {}).get("tags", [])]


_CHECK_CALL = re.compile(r"\bcheck_(\w+)\s*\(")


def exercise_version(solution: nbformat.NotebookNode, name: str = "notebook") -> str:
    """The version of a chapter's exercise: 12 hex digits of the sha256 of its task cells and check names.

    It changes when a task cell (its signature, docstring, stub or surrounding code) or the set of
    check functions the notebook calls changes, and not for prose, outputs or the solution code
    itself (a better solution is the same exercise).

    Args:
        solution: the solution notebook.
        name: its file name, for error messages.
    Returns:
        e.g. ``"3f2a9c0b1d4e"``.
    """
    digest = hashlib.sha256()
    for source in task_cells(solution, name):
        digest.update(source.encode("utf-8") + b"\0")
    calls = {n for cell in solution.cells if cell.cell_type == "code" for n in _CHECK_CALL.findall(cell.source)}
    digest.update(("checks:" + ",".join(sorted(calls))).encode("utf-8"))
    return digest.hexdigest()[:12]


def _parse(source: str):
    """The cell's syntax tree, IPython magics and shell lines blanked out; None if Python cannot read it."""
    import ast

    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%time ", "%%time")) and not stripped.startswith(("%timeit", "%%timeit")):
            line = line.replace("%%time", "", 1) if stripped.startswith("%%") else line.replace("%time ", "", 1)
        lines.append("" if line.lstrip().startswith(("%", "!")) else line)
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


def ungraded_exercises(solution: nbformat.NotebookNode, name: str = "notebook") -> list[str]:
    """Warnings for the exercises of a solution notebook that no check of ``course_lib.checks`` grades.

    Two cases, one warning each:

    - a function (or class) whose body holds a ``### BEGIN SOLUTION`` region and whose name is
      passed to no ``check_...(...)`` call anywhere in the notebook: the learner gets no feedback
      and the batch grader gives it no points;
    - a ``check_<name>(...)`` call whose check is defined in the notebook itself, or is not in
      ``course_lib.checks``: it runs for the learner, but the batch grader looks checks up in
      ``course_lib.checks`` only (:func:`course_lib.grading.discovery.discover_chapters` skips the
      name), so the functions passed to it are not graded.

    Args:
        solution: the solution notebook.
        name: its file name, for the messages.
    Returns:
        one line per problem (``"<name>, cell <n>: ..."``), in cell order; empty when every
        exercise is graded.
    """
    import ast

    from .. import checks

    exercises: list[tuple[int, str]] = []  # (cell index, function or class name)
    passed: set[str] = set()  # names passed to a check call
    calls: list[tuple[int, str, list[str]]] = []  # (cell index, check name, names passed)
    defined: set[str] = set()  # check_ functions defined in the notebook
    for index, cell in enumerate(solution.cells):
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        begins = [n for n, line in enumerate(cell.source.splitlines(), 1) if line.strip() == BEGIN]
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("check_"):
                    defined.add(node.name)
                if any(node.lineno <= line <= (node.end_lineno or node.lineno) for line in begins):
                    exercises.append((index, node.name))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            check = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if not check.startswith("check_"):
                continue
            names = [n.id for arg in [*node.args, *(k.value for k in node.keywords)]
                     for n in ast.walk(arg) if isinstance(n, ast.Name)]
            passed.update(names)
            calls.append((index, check, names))
    warnings: list[tuple[int, str]] = []
    for index, function in exercises:
        if function not in passed:
            warnings.append((index, f"exercise `{function}` has a solution region, but no check_...(...) call in "
                                    f"the notebook is given `{function}`: no check grades it (add "
                                    f"`check_{function}({function})` after it, with a check in course_lib.checks)"))
    reported: set[str] = set()
    for index, check, names in calls:
        if check in reported:
            continue
        where = ("is defined in the notebook itself" if check in defined else "is not in course_lib.checks")
        if check in defined or not callable(getattr(checks, check, None)):
            reported.add(check)
            graded = [f"`{e}`" for _, e in exercises if e in names]
            warnings.append((index, f"`{check}` {where}: it runs in the notebook, but the batch grader looks "
                                    "checks up in course_lib.checks only and skips it"
                                    + (f", so {', '.join(graded)} get no points" if graded else "")
                                    + " (move the check into course_lib/checks/)"))
    return [f"{name}, cell {index}: {text}" for index, text in sorted(warnings, key=lambda w: w[0])]


def make_exercise(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """Return the exercise version of a solution notebook (a new object; the input is unchanged)."""
    nb = nbformat.from_dict(solution)  # deep copy
    cells = []
    for index, cell in enumerate(nb.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = BADGES.sub(lambda m: m.group(0).replace("/solutions/", "/exercises/")
                                     .replace("labpath=solutions/", "labpath=exercises/"), cell.source)
        cells.append(cell)
    nb.cells = cells
    nb.metadata["course"] = {"generated_from": f"solutions/{name}", "version": exercise_version(solution, name),
                             "edit": "edit the solution, then run make exercises"}
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The exact text written to disk (nbformat's own JSON layout, newline-terminated)."""
    return nbformat.writes(nb) + "\n"


def build(solutions: Path, exercises: Path, check: bool = False) -> list[str]:
    """Generate (or, with ``check``, compare) every exercise notebook.

    Returns:
        the list of problems found in check mode (stale, missing or orphaned exercise files);
        empty when everything is up to date. In write mode, the list of files written.
    """
    sources = sorted(solutions.glob("*.ipynb"))
    report: list[str] = []
    if not check:
        exercises.mkdir(parents=True, exist_ok=True)
    for path in sources:
        text = render(make_exercise(nbformat.read(path, as_version=4), path.name))
        target = exercises / path.name
        if check:
            if not target.exists():
                report.append(f"missing: {target} (generate it from {path})")
            elif target.read_text(encoding="utf-8") != text:
                report.append(f"stale: {target} differs from what {path} generates")
        elif not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            report.append(str(target))
    names = {p.name for p in sources}
    for orphan in sorted(exercises.glob("*.ipynb")):
        if orphan.name not in names:
            report.append(f"orphan: {orphan} has no source in {solutions}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if exercises/ is not what solutions/ generates")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="folder of solution notebooks")
    parser.add_argument("--exercises", type=Path, default=ROOT / "exercises", help="folder to write exercises to")
    args = parser.parse_args(argv)
    try:
        report = build(args.solutions, args.exercises, check=args.check)
    except ValueError as exc:
        print(f"build_exercises: {exc}", file=sys.stderr)
        return 2
    for path in sorted(args.solutions.glob("*.ipynb")):
        for warning in ungraded_exercises(nbformat.read(path, as_version=4), path.name):
            print(f"build_exercises: warning: {warning}", file=sys.stderr)
    if args.check:
        if report:
            print("exercises/ is out of date; run `make exercises`:\n  " + "\n  ".join(report))
            return 1
        print(f"exercises/ is up to date with {args.solutions.name}/")
        return 0
    for line in report:
        print(("wrote " if not line.startswith("orphan") else "") + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
