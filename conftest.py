"""nbval runs lessons 01-09 without the optional ``pretrained`` extra, and so proves they need none of it.

Chapters 01-09 must run on the base install (torch, numpy, matplotlib, ipywidgets, Jupyter): the
``pretrained`` extra (transformers, sentence-transformers, the packaged model; pyproject.toml) is
for chapter 10 and one section each of 07, 09 and 11. Rather than build a second environment,
each kernel that nbval starts for ``notebooks/0[1-9]_*.ipynb`` first installs an import hook
that makes the extra's packages unimportable, as if they were not installed. Cells tagged
``pretrained`` (those optional sections) run with the hook lifted, so their checks against the
reference libraries still run here. The hook is in the kernel, not in this process.
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
