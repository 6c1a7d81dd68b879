"""Test-wide settings and the ``device`` fixture.

Hypothesis runs the same examples on every machine (derandomized profile "course": no flaky CI).

Devices. A test that takes the ``device`` argument runs once per entry of ``DEVICES``:

- ``cpu``: always; the numbers are compared with PyTorch's.
- ``meta``: always; tensors with a shape, a dtype and a device but no data. Any read of a value
  on the host (``.item()``, ``bool(t)``, ``.tolist()``, a shape that depends on the values)
  raises on ``meta``, so a function that runs on ``meta`` is proven free of host syncs (the
  reads that make a CPU wait for a GPU). There are no numbers to compare: check shapes, dtypes
  and devices there, numbers elsewhere (``has_data(device)``).
- ``cuda``: when ``torch.cuda.is_available()``; elsewhere the case is reported as skipped, with
  the reason, so a CPU-only run shows what it did not cover.

Use it in any test file::

    def test_x(device):                      # cpu, meta, cuda
        out = f(torch.zeros(2, 3, device=device))
        assert out.device.type == device.type

    @pytest.mark.parametrize("device", devices_for(meta="needs values: ..."))
    def test_y(device): ...                  # cpu and cuda; meta skipped with that reason

``from conftest import devices_for, has_data, needs_cuda`` works from every file in tests/ (pytest
puts this folder on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from filelock import FileLock
from hypothesis import settings

settings.register_profile("course", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("course")

_NO_CUDA = "no CUDA device on this machine (torch.cuda.is_available() is False)"
#: For a test that needs a GPU as a whole (not one case of ``device``): ``@needs_cuda``.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=_NO_CUDA)
DEVICE_KINDS = ("cpu", "meta", "cuda")


def devices_for(**skip: str) -> list:
    """The device parameters (``pytest.param``), with the kinds named in ``skip`` skipped for the reason given.

    Example: ``devices_for(meta="compares numbers, and meta tensors have none")``. cuda is
    skipped (with its own reason) where no GPU is available.
    """
    unknown = set(skip) - set(DEVICE_KINDS)
    if unknown:
        raise ValueError(f"devices_for: unknown device kinds {sorted(unknown)}; known: {DEVICE_KINDS}")
    params = []
    for kind in DEVICE_KINDS:
        marks = []
        if kind in skip:
            marks.append(pytest.mark.skip(reason=f"not on {kind}: {skip[kind]}"))
        elif kind == "cuda" and not torch.cuda.is_available():
            marks.append(pytest.mark.skip(reason=_NO_CUDA))
        params.append(pytest.param(torch.device(kind), id=kind, marks=marks))
    return params


DEVICES = devices_for()


def has_data(device: torch.device) -> bool:
    """True where tensors hold numbers (everywhere but ``meta``)."""
    return torch.device(device).type != "meta"


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device of ``DEVICES`` in turn: cpu, meta, and cuda where available (see the module docstring)."""
    return request.param


@pytest.fixture(scope="session")
def built_site(tmp_path_factory, worker_id) -> Path:
    """The offline site of the committed lessons, built once per test run and shared by the xdist workers.

    test_site.py and test_browser.py read it and must never write to it. The first worker to get
    the lock builds it; the others wait for the lock, then find the marker the build wrote last
    (pytest-xdist's recipe for session data shared across workers).
    """
    from course_lib.authoring.site import build_site

    if worker_id == "master":  # no xdist
        out = tmp_path_factory.mktemp("course") / "site"
        build_site(out)
        return out
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this run
    out, done = shared / "shared-site" / "site", shared / "shared-site" / "built"
    with FileLock(str(shared / "shared-site.lock")):
        if not done.is_file():
            build_site(out)
            done.write_text("ok\n")
    return out
