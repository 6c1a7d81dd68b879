"""Write the bytecode (.pyc) of what the course and its tests import, once, right after `make install`.

`make install` installs without compiling (compiling every module of torch, transformers and
JupyterLab takes about 100 s, most of it for modules never imported). Without this step, the
first processes of `make test` would each compile the same modules at the same time: the first
run after an install measured about 60 s slower than the second. Two processes, one per core,
import two halves of the list below (``torch`` and ``jupyter``); the ``jupyter`` half takes
nothing that imports torch until its last group, by which time the ``torch`` half has compiled it.
Not exhaustive: whatever else a test imports is compiled by the first process that imports it.

Usage: python scripts/warm_bytecode.py torch|jupyter   (the Makefile starts both at once)
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

GROUPS = {
    # The lessons' stack, then the optional extra, then every module of course_lib (its
    # grading modules load on first use, so importing the package is not enough).
    "torch": [
        "torch", "numpy", "matplotlib.pyplot", "tqdm", "safetensors", "tokenizers", "hypothesis",
        "transformers", "transformers.models.bert.modeling_bert", "transformers.models.gpt2.modeling_gpt2",
        "transformers.models.t5.modeling_t5", "sentence_transformers",
    ],
    # Jupyter and the test tools, then scikit-learn's metrics (sentence_transformers imports them,
    # torch does not: compiled here, they leave the other half's critical path), then what
    # JupyterLab's server, a kernel (its debugger, the magics), a failing cell's traceback, the
    # wheel build and nbconvert load at run time; last, the parts of torch that torch.testing, the
    # FLOP counter and torch.compile's inductor load on first use (a first run of tests/test_compile.py
    # took 27 s against 9 s for the second: about 9 s of it is inductor's C++ build, cached in /tmp).
    "jupyter": [
        "ipywidgets", "IPython", "ipykernel.kernelapp", "nbformat", "nbclient", "nbconvert", "jupyter_client",
        "jupyterlab", "jupyter_server.serverapp", "pytest", "xdist", "nbval.plugin", "yaml", "playwright.sync_api",
        "sklearn.metrics",
        "jupyterlab.labapp", "jupyter_lsp", "jupyter_server_terminals", "jupyter_server_mathjax", "httpx",
        "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.magics", "IPython.core.debugger", "stack_data",
        "execnet", "setuptools", "build", "twine.commands.check", "docutils.core", "pygments.lexers.python",
        "torch.distributed.tensor", "torch.utils.flop_counter", "torch._inductor.compile_fx",
    ],
}


def course_lib_modules() -> list[str]:
    """Every module of course_lib but the ``__main__`` ones (importing those runs a command)."""
    import course_lib

    return [m.name for m in pkgutil.walk_packages(course_lib.__path__, "course_lib.") if not m.name.endswith("__main__")]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in GROUPS:
        print(f"usage: warm_bytecode.py {'|'.join(GROUPS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's note about frozen modules, on import
    names = GROUPS[argv[0]] + (course_lib_modules() if argv[0] == "torch" else [])
    for name in names:
        importlib.import_module(name)  # an ImportError here is an install that is not what it should be
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
