"""The exercise generator: solutions/ is the single source of exercises/."""

import subprocess
import sys

import nbformat
import pytest

from course_lib.authoring.build_exercises import ROOT, build, make_exercise, strip_solutions


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
    """The command `make test` also runs: exercises/ must be what solutions/ generates."""
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
