"""scripts/gpu_check.py (``make gpu-check``) without a GPU: it refuses clearly, and its report has the documented keys."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_without_cuda_it_exits_2_with_a_clear_message_and_writes_nothing(tmp_path):
    available, what = gpu_check.cuda_status()
    assert available == torch.cuda.is_available()
    if available:  # on a GPU machine this test must not start the whole gpu-check (it runs these tests)
        assert "CUDA" in what
        return
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2
    assert "CUDA is not available on this machine" in done.stderr and "nothing was checked" in done.stderr
    assert not out.exists()


def _fake(ok=True):
    notebook = {"notebook": "01_x.ipynb", "seconds": 1.5, "ok": ok, "all_asserts_held": ok, "error": None}
    return dict(torch_version="2.x", cuda="CUDA 12, a GPU", get_device={"device": "cuda", "ok": True},
                pytest={"passed": 3, "failed": 0, "errors": 0, "skipped": 0, "ok": True},
                notebooks=[notebook, {**notebook, "notebook": "02_y.ipynb", "ok": True}],
                benchmark={"ratios": [{"figure": "f", "config": "c", "value": 1.1, "target": 1.2, "meets_target": True}],
                           "ok": True},
                grader=None, started=0.0, seconds=12.34)


def test_the_report_has_the_documented_keys_and_says_what_ran(tmp_path):
    report = gpu_check.build_report(**_fake())
    assert tuple(report) == gpu_check.REPORT_KEYS
    assert report["ok"] is True
    assert report["grader"] == {"ran": False} and report["pytest"]["ran"] is True  # not run is never "passed"
    assert report["notebooks"]["count"] == 2 and report["notebooks"]["passed"] == 2
    assert report["notebooks"]["seconds"] == 3.0 and report["seconds"] == 12.3
    assert report["benchmark"]["ratios"][0]["value"] == 1.1 and report["started"].startswith("1970-01-01T00:00:00")
    path = gpu_check.write_report(report, tmp_path / "build" / "gpu-check.json")
    assert json.loads(path.read_text()) == report
    failing = gpu_check.build_report(**_fake(ok=False))
    assert failing["ok"] is False and failing["notebooks"]["passed"] == 1
    no_cuda_pick = gpu_check.build_report(**{**_fake(), "get_device": {"device": "cpu", "ok": False}})
    assert no_cuda_pick["ok"] is False


def test_junit_counts():
    xml = ('<testsuites><testsuite name="pytest" tests="10" failures="2" errors="1" skipped="3"></testsuite>'
           '</testsuites>')
    assert gpu_check.parse_junit(xml) == {"tests": 10, "passed": 4, "failed": 2, "errors": 1, "skipped": 3}


def test_a_notebook_runs_with_COURSE_DEVICE_cuda_and_a_failed_assert_fails_it(tmp_path):
    good = tmp_path / "good.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("import os\nassert os.environ['COURSE_DEVICE'] == 'cuda'")]), good)
    bad = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("assert x == 2, 'the claim'")]), bad)
    ok = gpu_check.run_notebook(good, timeout=120)
    assert ok["ok"] and ok["all_asserts_held"] and ok["assert_cells"] == 1 and ok["error"] is None
    failed = gpu_check.run_notebook(bad, timeout=120)
    assert not failed["ok"] and failed["error"]["ename"] == "AssertionError" and failed["cells_run"] == 2
    assert failed["error"]["cell"] == 1 and "assert x == 2, 'the claim'" in failed["error"]["traceback"]
    assert "\x1b[" not in failed["error"]["traceback"]  # the failing line, readable in the JSON report


def test_notebooks_run_side_by_side_keep_their_order_and_their_own_verdicts(tmp_path):
    paths = []
    for name, source in (("b_fails.ipynb", "assert 1 == 2, 'the claim'"), ("a_passes.ipynb", "x = 1")):
        paths.append(tmp_path / name)
        nbformat.write(new_notebook(cells=[new_code_cell(source)]), paths[-1])
    lines = []
    results = gpu_check.run_notebooks(paths, timeout=120, jobs=2, echo=lines.append)
    assert [r["notebook"] for r in results] == ["b_fails.ipynb", "a_passes.ipynb"]  # the order asked, not finished
    assert [r["ok"] for r in results] == [False, True] and results[0]["error"]["ename"] == "AssertionError"
    assert len(lines) == 2 and any(line.startswith("  b_fails.ipynb: FAILED") for line in lines)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        gpu_check.run_notebooks(paths, timeout=120, jobs=0)
