"""Re-execute notebooks in place, byte-stable when nothing changed (``make notebooks``).

A plain ``jupyter nbconvert --execute --inplace`` rewrites every notebook on every run: each cell
gets ``metadata.execution`` timestamps, every widget gets a new random model id, and cells that
print a measured time print a new one. None of that is a change of content, yet a re-run of an
unchanged course showed about 2,800 changed lines. This command executes with nbclient (the
library nbconvert itself uses) and then normalises what varies:

- no ``metadata.execution`` timestamps (nbclient's ``record_timing`` is off);
- a cell's consecutive prints are one output (the kernel splits them where it happens to flush);
- widget model ids are derived from the notebook's name and the widget's order, the same on every
  run, in the outputs and in the notebook's saved widget state alike, and the state keeps only the
  widgets an output shows (a progress bar that closed itself leaves its last counts behind);
- a cell tagged ``varying`` (it prints a wall-clock time, a speed, anything a second run measures
  differently) keeps its committed outputs when its source has not changed since the run that made
  them (``metadata.course_outputs_of`` holds that source's hash). Its asserts still run: only the
  printed figures are kept. Change the cell, and its new outputs are written.

Usage::

    python -m course_lib.authoring.execute notebooks/01_dot_products.ipynb [...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient

VARYING_TAG = "varying"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TIMEOUT = 300  # seconds per cell


def _drop_unshown_widgets(nb) -> None:
    """Keep in the saved widget state only the models an output shows, and the models they refer to.

    A progress bar that closed itself (tqdm's ``leave=False``) is in no output, but its last
    values (steps done, rate, elapsed time) stay in the state and differ on every run.
    """
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    state = widgets.get("state", {})
    if not state:
        return
    todo = [output["data"][WIDGET_VIEW]["model_id"] for cell in nb.cells for output in cell.get("outputs", [])
            if WIDGET_VIEW in output.get("data", {})]
    keep: set[str] = set()
    while todo:
        model = todo.pop()
        if model in keep or model not in state:
            continue
        keep.add(model)
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model]))
    widgets["state"] = {m: v for m, v in state.items() if m in keep}
    if not widgets["state"]:
        nb.metadata.pop("widgets")


def _stable_ids(nb, name: str) -> None:
    """Replace every widget model id by one derived from ``name`` and the id's order of appearance."""
    _drop_unshown_widgets(nb)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    order: list[str] = []  # the shown models in output order, each followed by the models it refers to

    def visit(model: str) -> None:
        if model in order:
            return
        order.append(model)
        for ref in re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state.get(model, {}), sort_keys=True)):
            visit(ref)

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            model = output.get("data", {}).get(WIDGET_VIEW, {}).get("model_id")
            if model:
                visit(model)
    if not order:
        return
    mapping = {old: uuid.UUID(hashlib.sha256(f"{name}:{i}".encode()).hexdigest()[:32]).hex
               for i, old in enumerate(order)}
    # The saved state refers to models by "IPY_MODEL_<id>" inside other models' values: rewrite the text.
    if state:
        saved = nb.metadata["widgets"][WIDGET_STATE]
        saved["state"] = {m: state[m] for m in order if m in state}  # in the order of the new ids
        text = json.dumps(saved)
        for old, new in mapping.items():
            text = text.replace(old, new)
        nb.metadata["widgets"][WIDGET_STATE] = json.loads(text)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and view.get("model_id") in mapping:
                view["model_id"] = mapping[view["model_id"]]


def _coalesce_streams(nb) -> None:
    """Merge consecutive stdout (or stderr) outputs of a cell into one.

    How a cell's prints are split into messages depends on when the kernel flushes, which varies
    from run to run; the text does not.
    """
    for cell in nb.cells:
        merged = []
        for output in cell.get("outputs", []):
            if (output.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                    and merged[-1].get("name") == output.get("name")):
                merged[-1]["text"] = merged[-1]["text"] + output["text"]
            else:
                merged.append(output)
        if cell.cell_type == "code":
            cell.outputs = merged


def _source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _keep_varying_outputs(new, old) -> int:
    """Give each cell tagged ``varying`` its old outputs if the same source made them; return how many.

    The cell's ``metadata.course_outputs_of`` records a hash of the source whose run gave the
    committed outputs, so an edited cell (whose file already holds the new source beside the old
    outputs) gets its new outputs.
    """
    before = {c.get("id"): c for c in old.cells if c.cell_type == "code" and c.get("id")}
    kept = 0
    for cell in new.cells:
        if cell.cell_type != "code" or VARYING_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        digest = _source_hash(cell.source)
        previous = before.get(cell.get("id"))
        if previous is not None and previous.get("metadata", {}).get("course_outputs_of") == digest \
                and previous.get("outputs"):
            cell.outputs = previous.outputs
            kept += 1
        cell.metadata["course_outputs_of"] = digest
    return kept


def execute(path: Path | str, timeout: int = TIMEOUT) -> bool:
    """Execute the notebook at ``path`` in its folder and write it back, normalised (see the module doc).

    Args:
        path: the .ipynb file.
        timeout: seconds allowed per cell.
    Returns:
        True when the file changed.
    Raises:
        nbclient.exceptions.CellExecutionError: when a cell raises (the file is left as it was).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    old = nbformat.reads(text, as_version=4)
    nb = nbformat.reads(text, as_version=4)
    client = NotebookClient(nb, timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    _coalesce_streams(nb)
    _keep_varying_outputs(nb, old)
    _stable_ids(nb, path.name)
    new_text = nbformat.writes(nb) + "\n"
    if new_text == text:
        return False
    path.write_text(new_text, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=TIMEOUT, help="seconds per cell (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        changed = execute(path, args.timeout)
        print(f"{path}: {'rewritten' if changed else 'unchanged'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
