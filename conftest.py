"""nbval runs lessons 01-09 without the optional ``pretrained`` extra, and so proves they need none of it.

Chapters 01-09 must run on the base install (torch, numpy, matplotlib, ipywidgets, Jupyter): the
``pretrained`` extra (transformers, sentence-transformers, the packaged model; pyproject.toml) is
for chapter 10 and one section each of 07, 09 and 11. Rather than build a second environment,
each kernel that nbval starts for ``notebooks/0[1-9]_*.ipynb`` first installs an import hook
that makes the extra's packages unimportable, as if they were not installed. Cells tagged
``pretrained`` (those optional sections) run with the hook lifted, so their checks against the
reference libraries still run here. The hook is in the kernel, not in this process.

Also here, for the whole run: the order in which the two xdist workers take the files (see
``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import re

import pytest

from course_lib.extras import EXTRAS

BLOCKED_LESSONS = re.compile(r"notebooks[/\\]0[1-9]_[^/\\]*\.ipynb$")
PRETRAINED_TAG = "pretrained"
TIMEOUT = 60  # seconds for the kernel to run the few lines below

_INSTALL = f"""
import importlib.abc as _abc, sys as _sys

class _HideOptionalExtra(_abc.MetaPathFinder):
    \"\"\"Test harness (conftest.py): the optional extra's packages look uninstalled.\"\"\"
    names = {set(EXTRAS["pretrained"])!r}
    enabled = True

    def find_spec(self, name, path=None, target=None):
        if self.enabled and name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test harness)", name=name)
        return None

_sys.meta_path.insert(0, _HideOptionalExtra())
del _abc, _HideOptionalExtra
"""
_TOGGLE = "[f for f in __import__('sys').meta_path if type(f).__name__ == '_HideOptionalExtra'][0].enabled = {}"


def _run_in_kernel(kernel, code: str) -> None:
    msg_id = kernel.execute_cell_input(code, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=TIMEOUT)
    kernel.await_idle(msg_id, TIMEOUT)


def _blocked(item) -> bool:
    return bool(BLOCKED_LESSONS.search(str(item.path)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    outcome = yield
    if outcome.excinfo is not None or not hasattr(item, "cell") or not _blocked(item):
        return
    notebook = item.parent
    if not getattr(notebook, "_extra_hidden", False):  # the notebook's kernel has just started
        _run_in_kernel(notebook.kernel, _INSTALL)
        notebook._extra_hidden = True
    if PRETRAINED_TAG in item.cell.get("metadata", {}).get("tags", []):
        _run_in_kernel(notebook.kernel, _TOGGLE.format(False))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    if hasattr(item, "cell") and _blocked(item) and PRETRAINED_TAG in item.cell.get("metadata", {}).get("tags", []):
        kernel = item.parent.kernel
        if kernel is not None and kernel.is_alive():
            _run_in_kernel(kernel, _TOGGLE.format(True))
    yield


# --------------------------------------------------------------------------------------------
# The order of the files. `make test` runs two xdist workers with --dist loadfile (a file's
# tests, a notebook's cells, stay in one worker) and --no-loadscope-reorder, so the workers take
# the files in the order below. The longest go first (longest processing time first), so that
# the short ones fill in at the end and both workers finish together: in file-count order (xdist's
# default), a 30 s file taken last left one core idle for up to 30 s. Seconds per file, measured
# with both cores busy on 2026-12-04, rounded; a stale figure costs time, never a result.
# --------------------------------------------------------------------------------------------

SLOW_FILES = {
    "notebooks/11_small_gpt.ipynb": 51,
    "tests/test_grading.py": 46,
    "tests/test_browser.py": 33,
    "notebooks/08_tiny_transformer.ipynb": 31,
    "tests/test_explorers.py": 25,
    "tests/test_checks_contract.py": 24,
    "tests/test_site.py": 19,
    "tests/test_dist.py": 18,
    "notebooks/06_cross_attention.ipynb": 17,
    "tests/test_device_checks.py": 15,
    "notebooks/10_pretrained_attention.ipynb": 14,
    "tests/test_slides.py": 14,
    "notebooks/09_efficient_attention.ipynb": 14,
    "tests/test_confine.py": 10,
    "tests/test_grading_reports.py": 10,
    "tests/test_notebook_setup.py": 10,
    "tests/test_compile.py": 9,
    "notebooks/07_positional_encoding.ipynb": 9,
}


def pytest_collection_modifyitems(session, config, items):
    """Longest files first (SLOW_FILES), the rest in collection order; the order within a file is kept."""
    items.sort(key=lambda item: -SLOW_FILES.get(item.nodeid.split("::", 1)[0], 0))  # a stable sort
