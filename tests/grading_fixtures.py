"""Submissions for testing and benchmarking ``course-grade``: good, buggy and hostile notebooks.

Everything is built from the course's own notebooks (solutions/ and exercises/, whichever
chapters exist) with small edits, so the fixtures follow the chapters as they change. Used by
tests/test_grading.py and benchmarks/grade_throughput.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def chapters() -> list[str]:
    """The stems of every solution notebook, e.g. ["01_dot_products", "02_softmax", ...]."""
    return sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))


def chapter(prefix: str) -> str | None:
    """The chapter whose stem starts with ``prefix`` ("03" -> "03_scaling"), or None."""
    found = [c for c in chapters() if c.startswith(prefix)]
    return found[0] if found else None


def solution(name: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)


def exercise(name: str) -> nbformat.NotebookNode:
    return nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4)


def with_body(nb: nbformat.NotebookNode, function: str, body: str) -> nbformat.NotebookNode:
    """``nb`` with the solution region of ``def function(...)`` replaced by ``body`` (a copy).

    Raises:
        LookupError: if no code cell defines ``function`` with a solution region.
    """
    nb = nbformat.from_dict(nb)
    pattern = re.compile(rf"^(\s*)def {re.escape(function)}\(", re.M)
    for cell in nb.cells:
        if cell.cell_type != "code" or not pattern.search(cell.source) or BEGIN not in cell.source:
            continue
        lines = cell.source.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == BEGIN and i > _def_line(lines, function))
        stop = next(i for i in range(start, len(lines)) if lines[i].strip() == END)
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        new = [indent + line if line else line for line in textwrap_dedent(body).splitlines()]
        cell.source = "\n".join(lines[:start] + new + lines[stop + 1:])
        return nb
    raise LookupError(f"no solution region for {function}")


def _def_line(lines: list[str], function: str) -> int:
    return next(i for i, line in enumerate(lines) if re.match(rf"\s*def {re.escape(function)}\(", line))


def textwrap_dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


def add_cell(nb: nbformat.NotebookNode, source: str, at: int | None = None) -> nbformat.NotebookNode:
    """``nb`` with a new code cell (a copy); ``at`` None appends at the end."""
    nb = nbformat.from_dict(nb)
    cell = nbformat.v4.new_code_cell(textwrap_dedent(source))
    nb.cells.insert(len(nb.cells) if at is None else at, cell)
    return nb


def rename(nb: nbformat.NotebookNode, old: str, new: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = re.sub(rf"\bdef {old}\(", f"def {new}(", cell.source)
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------------------------
# Buggy: (chapter prefix, function, body, the diagnosis key it must get).
# --------------------------------------------------------------------------------------------

BUGGY = [
    ("01", "dot_product_scores", "return query @ key.T", "batch_transpose"),
    ("02", "softmax", "e = torch.exp(x)\nreturn e / e.sum(dim=dim, keepdim=True)", "unstable_softmax"),
    ("02", "softmax", """
        d = 0 if dim % x.dim() else -1
        z = x - x.amax(dim=d, keepdim=True)
        return z.exp() / z.exp().sum(dim=d, keepdim=True)""", "softmax_wrong_axis"),
    ("03", "scaled_scores", "return query @ key.transpose(-2, -1)", "scale_forgotten"),
    ("03", "scaled_scores", "return query @ key.transpose(-2, -1) / query.shape[-1]", "scale_by_dk"),
    ("03", "attention", """
        weights = softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
        if mask is not None:
            weights = weights * mask
        return weights @ value""", "mask_after_softmax"),
    ("03", "attention", """
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        return softmax(scores, dim=-1) @ value""", "mask_inverted"),
    ("03", "attention", """
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e9)
        return softmax(scores, dim=-1) @ value""", "finite_fill_half"),
    ("04", "make_causal_mask", "return torch.ones(L, L, dtype=torch.bool).tril(-1)", "causal_off_by_one"),
    ("05", "split_heads", "B, T, D = x.shape\nreturn x.view(B, num_heads, T, D // num_heads)", "split_without_transpose"),
    ("07", "sinusoidal_encoding", """
        pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
        two_i = torch.arange(0, embed_dim, 2, dtype=torch.float64)[None, :]
        angle = pos / 10000.0 ** (two_i / embed_dim)
        pe = torch.zeros(num_positions, embed_dim, dtype=torch.float64)
        pe[:, 0::2] = torch.cos(angle)
        pe[:, 1::2] = torch.sin(angle)
        return pe.float()""", "sin_cos_swapped"),
]


def buggy_notebooks(folder: Path, only: list[str] | None = None) -> dict[str, tuple[str, str, str]]:
    """Write one notebook per BUGGY entry whose chapter exists; {student: (chapter, exercise, key)}.

    ``only`` restricts to the given diagnosis keys.
    """
    made = {}
    for prefix, function, body, key in BUGGY:
        name = chapter(prefix)
        if name is None or (only is not None and key not in only):
            continue
        student = f"buggy_{prefix}_{key}"
        write(with_body(solution(name), function, body), folder / f"{student}.ipynb")
        made[student] = (name, function, key)
    return made


# --------------------------------------------------------------------------------------------
# Hostile: each is a working chapter-01 notebook plus something nasty (or no notebook at all).
# --------------------------------------------------------------------------------------------


def endless_loop() -> nbformat.NotebookNode:
    """Chapter 01's solution with a last cell that never ends (graded apart, with a short time limit)."""
    return add_cell(solution(chapter("01")), "while True:\n    pass")


def hostile_notebooks(folder: Path, out: Path) -> dict[str, str]:
    """Write the hostile submissions; {student: the status its row must get}.

    ``out`` is the grader's output folder (a submission tries to write there).
    """
    base = solution(chapter("01"))
    two = chapter("02")
    wrong_softmax = "return torch.exp(x - x.amax(dim=dim, keepdim=True))"  # no normalisation: a wrong answer
    statuses = {}

    def make(student: str, nb, status: str) -> None:
        write(nb, folder / f"{student}.ipynb")
        statuses[student] = status

    make("memory_blowup", add_cell(base, "hog = []\nwhile True:\n    hog.append(bytearray(64 << 20))"), "memory")
    make("calls_sys_exit", add_cell(base, "import sys\nsys.exit('bye')", at=4), "ok")
    make("calls_os_exit", add_cell(base, "import os\nos._exit(1)"), "crash")
    make("segfault", add_cell(base, "import ctypes\nctypes.string_at(0)"), "crash")
    make("huge_print", add_cell(base, """
        print("x" * (256 << 20))
        for i in range(100_000):
            print("spam", i)"""), "ok")
    make("prints_warnings", add_cell(with_body(base, "dot", """
        import warnings
        warnings.warn("a hand-made warning inside dot")
        return (u * v).sum()"""), """
        import sys, warnings
        warnings.warn("a warning at the top level")
        print("WARNING: something to stderr", file=sys.stderr)""", at=2), "ok")
    (folder / "not_json.ipynb").write_text("this is { not a notebook", encoding="utf-8")
    statuses["not_json"] = "invalid-notebook"
    make("renamed_function", rename(base, "dot", "dot_product"), "missing-function")
    make("no_exercises", nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), "missing-function")
    patches = """
        import numpy
        import torch
        import course_lib.checks as checks_package
        import course_lib.checks.core as checks_core
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        numpy.allclose = lambda *a, **k: True
        numpy.testing.assert_allclose = lambda *a, **k: None
        checks_core._difference = lambda got, expected: None
        checks_core.judge = lambda *a, **k: None
        checks_core.run_check = lambda *a, **k: None
        checks_package.check_softmax = lambda *a, **k: None"""
    wrong = with_body(solution(two), "softmax", wrong_softmax)
    make("monkeypatch", add_cell(wrong, patches, at=2), "ok")
    make("monkeypatch_twin", wrong, "ok")  # the same wrong answer without the patches
    steal = f"""
        import json, os
        listing = os.listdir({str(SOLUTIONS)!r})
        notebook = json.load(open({str(SOLUTIONS / (two + '.ipynb'))!r}))
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                exec("".join(cell["source"]))"""
    make("reads_solutions", add_cell(exercise(two), steal), "sandbox-violation")
    vandal = f"""
        for target in ({str(out / 'grades.csv')!r}, {str(out / 'feedback' / 'mallory.md')!r}, {str(out / 'evil.txt')!r}):
            try:
                with open(target, "w") as f:
                    f.write("hacked")
            except PermissionError:
                pass"""
    make("writes_output", add_cell(base, vandal), "sandbox-violation")
    uses_torch = with_body(solution(two), "softmax", "return torch.softmax(x, dim=dim)")
    make("uses_torch_softmax", uses_torch, "ok")
    honest = """
        import matplotlib.pyplot as plt
        import torch
        from course_lib.viz import plot_attention, softmax_explorer, attention_explorer, qkv_lookup_diagram
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        fig.savefig("figure.png")
        plot_attention(torch.softmax(torch.randn(4, 4), dim=-1), ["a", "b", "c", "d"])
        plt.show()
        softmax_explorer()
        attention_explorer()
        qkv_lookup_diagram()"""
    make("honest_plots", add_cell(base, honest), "ok")
    native_hostile(folder, out, make, base)
    return statuses


#: A file the native attack tries to plant in course_lib/ (it must never exist).
PLANTED = ROOT / "course_lib" / "_planted_by_a_submission.py"


def native_hostile(folder: Path, out: Path, make, base) -> None:
    """Submissions that attack through native code (libc through ctypes), one per attack.

    Each looks up the libc function by name, which the worker's audit hook records as a sandbox
    violation; the call itself is stopped by the kernel (Landlock, seccomp: tests/test_confine.py).
    ``native_alias_reads_solutions`` uses a glibc alias the hook does not list: only the kernel stops
    it, and its row must show that nothing was read.
    """
    libc = "import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    other = folder / "good_student" / f"{chapter('02')}.ipynb"
    attacks = {
        "native_writes_course_lib": f"fd = libc.open({str(PLANTED).encode()!r}, os.O_WRONLY | os.O_CREAT, 0o644)\n"
                                    "libc.write(fd, b'import os', 9)",
        "native_writes_output": f"fd = libc.open({str(out / 'native.txt').encode()!r}, os.O_WRONLY | os.O_CREAT, 0o644)\n"
                                "libc.write(fd, b'hacked', 6)",
        "native_reads_solutions": f"fd = libc.open({str(SOLUTIONS / (chapter('02') + '.ipynb')).encode()!r}, os.O_RDONLY)",
        "native_reads_another_submission": f"fd = libc.openat(-100, {str(other).encode()!r}, os.O_RDONLY)",
        "native_opens_a_socket": "s = libc.socket(2, 1, 0)",
        "native_signals_the_parent": "libc.kill(os.getppid(), signal.SIGTERM)",
        "native_ptraces_the_parent": "libc.ptrace(16, os.getppid(), 0, 0)  # PTRACE_ATTACH",
        "native_fork_bomb": "while libc.fork() >= 0:\n    pass",
    }
    for student, attack in attacks.items():
        make(student, add_cell(base, libc + attack), "sandbox-violation")
    alias = f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.__open64_2({str(SOLUTIONS / (chapter('02') + '.ipynb')).encode()!r}, os.O_RDONLY)
        if fd >= 0:
            buf = ctypes.create_string_buffer(400)
            libc.read(fd, buf, 400)
            raise RuntimeError("stolen: " + buf.raw.decode(errors="replace").replace(chr(10), " "))"""
    make("native_alias_reads_solutions", add_cell(base, alias), "ok")


# --------------------------------------------------------------------------------------------
# Gradescope's results.json, checked by hand (the documented fields and their types).
# --------------------------------------------------------------------------------------------

_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def gradescope_schema_errors(obj) -> list[str]:
    """What is wrong with ``obj`` as a Gradescope results.json (empty list: nothing).

    The schema: top-level ``score`` (number) or scores on every test; optional ``output`` (str),
    ``visibility`` and ``stdout_visibility`` (one of the four visibilities); ``tests``: a list of
    objects with ``name`` (str), ``score`` and ``max_score`` (numbers, 0 <= score), ``output``
    (str), ``visibility``, and optionally ``status`` ("passed" or "failed").
    """
    errors = []
    number = (int, float)
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    allowed = {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility",
               "extra_data", "tests", "leaderboard"}
    errors += [f"unknown top-level key {k!r}" for k in obj if k not in allowed]
    tests = obj.get("tests")
    if not isinstance(tests, list):
        errors.append("tests is not a list")
        tests = []
    if "score" in obj and (not isinstance(obj["score"], number) or isinstance(obj["score"], bool)):
        errors.append("score is not a number")
    if "score" not in obj and not all(isinstance(t, dict) and "score" in t for t in tests):
        errors.append("no top-level score and a test without a score")
    for key in ("visibility", "stdout_visibility"):
        if key in obj and obj[key] not in _VISIBILITY:
            errors.append(f"{key} {obj[key]!r} is not one of {sorted(_VISIBILITY)}")
    if "output" in obj and not isinstance(obj["output"], str):
        errors.append("output is not a string")
    test_keys = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
                 "tags", "visibility", "extra_data"}
    for i, t in enumerate(tests):
        if not isinstance(t, dict):
            errors.append(f"tests[{i}] is not an object")
            continue
        errors += [f"tests[{i}]: unknown key {k!r}" for k in t if k not in test_keys]
        for key in ("name", "output"):
            if not isinstance(t.get(key), str):
                errors.append(f"tests[{i}].{key} is not a string")
        for key in ("score", "max_score"):
            if not isinstance(t.get(key), number) or isinstance(t.get(key), bool) or t[key] < 0:
                errors.append(f"tests[{i}].{key} is not a non-negative number")
        if t.get("visibility", "visible") not in _VISIBILITY:
            errors.append(f"tests[{i}].visibility {t['visibility']!r} is invalid")
        if "status" in t and t["status"] not in ("passed", "failed"):
            errors.append(f"tests[{i}].status {t['status']!r} is invalid")
    return errors
