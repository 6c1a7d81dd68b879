"""make notebooks re-executes byte-stably: a second run of an unchanged notebook writes nothing.

A real kernel runs a small notebook with what used to vary on every run: a printed wall-clock
time (in a cell tagged ``varying``), a widget (a random model id each run) and nbclient's
per-cell timestamps.
"""

from __future__ import annotations

import nbformat

from course_lib.authoring.execute import VARYING_TAG, WIDGET_VIEW, execute


def _notebook(path, clock_source="import time\nprint(f'took {time.perf_counter():.6f} s')"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(clock_source, metadata={"tags": [VARYING_TAG]}),
        nbformat.v4.new_code_cell("import ipywidgets\nslider = ipywidgets.IntSlider(value=3)\nslider"),
        nbformat.v4.new_code_cell("import sys\nprint(sum(range(10)))\nsys.stdout.flush()\nprint('then')"),
        # a progress bar that removes itself, as tqdm's leave=False does: its values change every run
        nbformat.v4.new_code_cell("import time\nfrom IPython.display import clear_output, display\n"
                                  "bar = ipywidgets.FloatText(value=time.perf_counter())\n"
                                  "display(bar)\nclear_output()"),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    nbformat.write(nb, path)


def test_a_second_run_of_an_unchanged_notebook_changes_no_byte(tmp_path):
    path = tmp_path / "demo.ipynb"
    _notebook(path)
    assert execute(path) is True  # the first run writes outputs
    first = path.read_bytes()
    nb = nbformat.reads(first.decode(), as_version=4)
    assert all("execution" not in c.metadata for c in nb.cells)  # no timestamps
    assert [o.text for o in nb.cells[2].outputs] == ["45\nthen\n"]  # it ran; two flushed prints, one output
    view = nb.cells[1].outputs[0]["data"][WIDGET_VIEW]
    assert view["model_id"] in str(nb.metadata["widgets"])  # the saved state follows the renamed id
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert not any(m["model_name"] == "FloatTextModel" for m in state.values())  # the closed bar is gone
    assert execute(path) is False and path.read_bytes() == first  # the second run: byte for byte


def test_a_changed_varying_cell_gets_its_new_outputs(tmp_path):
    path = tmp_path / "demo.ipynb"
    _notebook(path)
    execute(path)
    old = nbformat.read(path, as_version=4).cells[0].outputs[0].text
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = "print('took 1.5 s')"
    nbformat.write(nb, path)
    execute(path)
    new = nbformat.read(path, as_version=4).cells[0].outputs[0].text
    assert new == "took 1.5 s\n" and new != old
