"""The exercise generator: solutions/ is the single source of exercises/."""

import subprocess
import sys

import nbformat
import pytest

from course_lib.authoring.build_exercises import ROOT, build, main, make_exercise, strip_solutions, ungraded_exercises


def test_region_is_replaced_at_its_indentation():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nprint('kept')"
    out = strip_solutions(src)
    assert "y = x + 1" not in out and "print('kept')" in out
    assert "\n    raise NotImplementedError(" in out
    namespace = {}
    exec(out, namespace)  # the stub still defines f
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize(
    "src, words",
    [
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "inside a function"),
        ("def f():\n    ### BEGIN SOLUTION\n    pass", "without"),
        ("def f():\n    pass\n    ### END SOLUTION", "without"),
        ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION", "nested"),
    ],
)
def test_malformed_regions_are_errors(src, words):
    with pytest.raises(ValueError, match=words):
        strip_solutions(src, "nb, cell 3")


def _solution_notebook():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION")
    code.outputs = [nbformat.v4.new_output("stream", text="secret output")]
    code.execution_count = 3
    hidden = nbformat.v4.new_code_cell("print('answer key')")
    hidden.metadata["tags"] = ["solution-only"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code, hidden]
    return nb


def test_outputs_are_cleared_and_solution_only_cells_dropped():
    ex = make_exercise(_solution_notebook(), "99_test.ipynb")
    assert [c.cell_type for c in ex.cells] == ["markdown", "code"]
    assert ex.cells[1].outputs == [] and ex.cells[1].execution_count is None
    assert "return 2 * x" not in ex.cells[1].source
    nbformat.validate(ex)


def test_check_mode_detects_stale_missing_and_orphan(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(_solution_notebook(), sol / "01_a.ipynb")
    assert build(sol, ex, check=True) == [f"missing: {ex / '01_a.ipynb'} (generate it from {sol / '01_a.ipynb'})"]
    assert build(sol, ex) == [str(ex / "01_a.ipynb")]
    assert build(sol, ex, check=True) == []
    assert build(sol, ex) == []  # idempotent: nothing rewritten
    (ex / "01_a.ipynb").write_text((ex / "01_a.ipynb").read_text().replace("Title", "Edited by hand"))
    assert build(sol, ex, check=True)[0].startswith("stale:")
    build(sol, ex)
    (ex / "02_orphan.ipynb").write_text("{}")
    assert build(sol, ex, check=True)[0].startswith("orphan:")


def test_repository_exercises_are_up_to_date():
    """How `make test` fails when exercises/ is not what solutions/ generates (README, "For instructors")."""
    result = subprocess.run([sys.executable, "-m", "course_lib.authoring.build_exercises", "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_solution_exercise_has_a_check_cell_after_it():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        regions = [i for i, c in enumerate(cells) if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
        assert len(regions) >= 3, f"{path.name}: at least 3 exercises expected, found {len(regions)}"
        for i in regions:
            following = [c for c in cells[i + 1:] if c.cell_type == "code"]
            assert following and "check_" in following[0].source, f"{path.name}, cell {i}: no check cell follows"


def _region(name: str, header: str = "") -> str:
    return f"{header}def {name}(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"


def _ungraded_notebook():
    """Four exercises: two graded by a course check (one inside a class, through a lambda), one
    checked by nobody, one by a check the notebook defines itself (which the batch grader skips)."""
    cells = [
        _region("graded"),
        "check_dot(graded);",
        "class Model:\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return x\n        ### END SOLUTION",
        "%time check_dot(lambda u, v: Model().forward(u) @ v);",  # a magic line is no error
        _region("forgotten"),
        "print('no check here')",
        "def check_mine(fn):\n    assert fn(1) == 1",
        _region("local"),
        "check_mine(local)",
    ]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])


def test_ungraded_exercises_are_named(tmp_path):
    found = ungraded_exercises(_ungraded_notebook(), "99_x.ipynb")
    assert len(found) == 2, found
    assert found[0].startswith("99_x.ipynb, cell 4: exercise `forgotten` has a solution region, but no check_")
    assert found[1].startswith("99_x.ipynb, cell 8: `check_mine` is defined in the notebook itself")
    assert "so `local` get no points" in found[1] and "course_lib.checks only" in found[1]
    graded = _ungraded_notebook()
    graded.cells = graded.cells[:4]
    assert ungraded_exercises(graded, "99_x.ipynb") == []  # a function and a method, both checked
    unknown = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_region("f")),
                                              nbformat.v4.new_code_cell("check_f(f)")])
    assert ungraded_exercises(unknown, "u.ipynb") == [
        "u.ipynb, cell 1: `check_f` is not in course_lib.checks: it runs in the notebook, but the batch grader "
        "looks checks up in course_lib.checks only and skips it, so `f` get no points (move the check into "
        "course_lib/checks/)"]


def test_make_exercises_warns_about_ungraded_exercises(tmp_path, capsys):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(_ungraded_notebook(), sol / "99_x.ipynb")
    assert main(["--solutions", str(sol), "--exercises", str(ex)]) == 0  # a warning, not an error
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 2)[:2] for line in err] == [["build_exercises", "warning"]] * 2
    assert "`forgotten`" in err[0] and "`check_mine`" in err[1]
    assert (ex / "99_x.ipynb").exists()


def test_the_course_solutions_have_no_ungraded_exercise():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        assert ungraded_exercises(nbformat.read(path, as_version=4), path.name) == []
