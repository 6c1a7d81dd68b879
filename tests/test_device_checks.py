"""Checks and the batch grader take a device: the learner's function runs there, the verdict is made on the CPU.

``check_<exercise>(fn, device=None)``: None is the notebook's device (``get_device()``, which
honours ``COURSE_DEVICE``). On ``meta`` (no values) a check can judge shapes and dtypes only: its
status is "shapes only", or "failed" with the reason (a wrong shape, a host read), never a crash.
``course-grade --device cpu|cuda``: cuda is refused (exit 2) when CUDA is not available.
"""

from __future__ import annotations

import csv
import inspect

import pytest
import torch
from test_checks_contract import GOOD

import grading_fixtures as fx
from course_lib import checks
from course_lib.checks import core
from course_lib.grading import discover_chapters, grade, main
from course_lib.grading.sandbox import Settings, run_worker

# The devices the checks run on here (tests/conftest.py may grow a shared `device` fixture; it
# can replace this list). meta is tested on its own below: it judges shapes only.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

_FIRST_GOOD: dict = {}
for _, _check, _fn in GOOD:
    _FIRST_GOOD.setdefault(_check.__name__, (_check, _fn))  # the first right answer of each check (the plain one)
ONE_GOOD_PER_CHECK = list(_FIRST_GOOD.values())
IDS = [check.__name__ for check, _ in ONE_GOOD_PER_CHECK]

# Right answers that never read a value on the host: on meta they must get "shapes only".
SHAPE_ONLY_ANSWERS = {"check_softmax", "check_attention", "check_masked_attention", "check_multi_head_attention",
                      "check_split_heads", "check_cross_attention", "check_decoder_layer_forward",
                      "check_teacher_forcing_loss", "check_online_softmax", "check_tiled_attention",
                      "check_kv_cache_step", "check_apply_rope", "check_make_causal_mask", "check_sinusoidal_encoding"}


def test_every_check_takes_a_device():
    for name in checks.__all__:
        if name.startswith("check_"):
            parameters = inspect.signature(getattr(checks, name)).parameters
            assert "device" in parameters and parameters["device"].default is None, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("check, fn", ONE_GOOD_PER_CHECK, ids=IDS)
def test_right_answers_pass_on_the_device(check, fn, device, capsys):
    report = check(fn, device=device)
    assert report.status == "passed" and report.diagnoses == [], report.results


def test_the_default_device_is_the_notebooks_and_honours_COURSE_DEVICE(monkeypatch, capsys):
    good_softmax = dict((c.__name__, f) for c, f in ONE_GOOD_PER_CHECK)["check_softmax"]
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert checks.check_softmax(good_softmax).status == "passed"
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    if torch.cuda.is_available():
        assert checks.check_softmax(good_softmax).status == "passed"
    else:
        with pytest.raises(ValueError, match="COURSE_DEVICE='cuda'.*not available"):
            checks.check_softmax(good_softmax)
    with pytest.raises(ValueError, match="not a device name"):
        checks.check_softmax(good_softmax, device="nodevice")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' was asked for, but it is not available"):
            checks.check_softmax(good_softmax, device="cuda")


def test_the_inputs_are_on_the_device_and_the_outputs_come_back_to_the_cpu():
    seen = []

    def spy(x, dim=-1):
        seen.append(x.device.type)
        return torch.softmax(x, dim)

    outcomes = core.compute_outcomes(_captured(checks.check_softmax), spy, device="meta")
    assert set(seen) == {"meta"}
    assert all(o.value.device.type == "meta" for row in outcomes for o in row)  # meta: nothing to bring back
    seen.clear()
    for device in DEVICES:
        outcomes = core.compute_outcomes(_captured(checks.check_softmax), spy, device=device)
        assert set(seen) == {device} and all(o.value.device.type == "cpu" for row in outcomes for o in row)
        seen.clear()


def _captured(check):
    with core.capture() as records:
        check(lambda *a, **k: None)
    return records[0].exercise


# --------------------------------------------------------------------------------------------
# meta: shapes and dtypes only.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check, fn", ONE_GOOD_PER_CHECK, ids=IDS)
def test_on_meta_a_right_answer_gets_shapes_only_or_the_reason_it_cannot_run(check, fn, capsys):
    report = check(fn, device="meta")  # never raises
    out = capsys.readouterr().out
    assert "values cannot be judged" in out
    assert all(r.title.endswith("(shapes and dtypes only, on meta)") for r in report.results)
    if check.__name__ in SHAPE_ONLY_ANSWERS:
        assert report.status == core.SHAPES_ONLY and report.passed == report.total >= 3, report.results
    else:  # these right answers read values on the host (e.g. return Python numbers) or use boolean indexing
        assert report.status in (core.SHAPES_ONLY, "failed")
        details = " ".join(r.detail for r in report.results if not r.passed)
        assert report.status == core.SHAPES_ONLY or "meta" in details


def test_on_meta_a_wrong_shape_fails_and_a_host_read_is_named(capsys):
    wrong_shape = checks.check_softmax(lambda x, dim=-1: torch.softmax(x, dim)[..., :1], device="meta")
    assert wrong_shape.status == "failed" and "returned" in wrong_shape.results[0].detail
    host_read = checks.check_softmax(lambda x, dim=-1: torch.softmax(x - x.max().item(), dim), device="meta")
    assert host_read.status == "failed" and "reads a tensor's value on the host" in host_read.results[0].detail
    stub = checks.check_softmax(_not_implemented, device="meta")
    assert stub.status == "not implemented"
    boolean_index = checks.check_softmax(lambda x, dim=-1: torch.softmax(x, dim) + x[x > 1e9].sum(), device="meta")
    assert boolean_index.status == "failed" and "meta" in boolean_index.results[0].detail  # not read as a stub


def test_a_tensor_created_on_another_device_is_reported(capsys):
    # On a GPU, torch.zeros(...) without device= lands on the CPU; meta shows the same without a GPU.
    report = checks.check_softmax(lambda x, dim=-1: torch.zeros(x.shape, dtype=x.dtype), device="meta")
    assert report.status == "failed"
    assert "returned a tensor on cpu, expected meta" in report.results[0].detail
    # a function given no tensor (causal_mask(L)) may create its result anywhere
    causal = dict((c.__name__, f) for c, f in ONE_GOOD_PER_CHECK)["check_make_causal_mask"]
    assert checks.check_make_causal_mask(causal, device="meta").status == core.SHAPES_ONLY


def _not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


# --------------------------------------------------------------------------------------------
# The batch grader.
# --------------------------------------------------------------------------------------------


def test_course_grade_refuses_an_unavailable_or_value_less_device(tmp_path, capsys):
    notebook = fx.write(fx.solution("02_softmax"), tmp_path / "class" / "02_softmax.ipynb")
    argv = [str(notebook), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--device", "meta"])
    assert exit_.value.code == 2 and "--device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exit_:
            main(argv + ["--device", "cuda"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "--device cuda" in err and "CUDA is not available" in err
        with pytest.raises(ValueError, match="CUDA is not available"):
            grade([notebook], tmp_path / "out", device="cuda", progress=False)
    assert not (tmp_path / "out").exists()  # refused before grading anything


def test_course_grade_device_cpu_end_to_end(tmp_path, capsys):
    notebook = fx.write(fx.solution("02_softmax"), tmp_path / "class" / "02_softmax.ipynb")
    out = tmp_path / "out"
    assert main([str(notebook), "--out", str(out), "--device", "cpu", "--jobs", "1", "--no-progress"]) == 0
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert float(rows[0]["total"]) == float(rows[0]["max"]) > 0


def test_the_graders_device_reaches_the_learners_call(tmp_path):
    """Settings.device travels in the job to the sandbox worker, which calls the function there."""
    chapter = discover_chapters(fx.SOLUTIONS, 1)["02_softmax"]
    source = "def softmax(x, dim=-1):\n    raise ValueError('called on ' + x.device.type)\n"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # meta stands in for cuda without a GPU (the same path through the worker); with one, cuda itself: the
    # confined, memory-limited worker must still reach the GPU (its context is made before the limits)
    for device in ("cpu", "meta", *(("cuda",) if torch.cuda.is_available() else ())):
        settings = Settings(60, 2048, 1, [], {}, str(workspace), device=device)
        run = run_worker([(0, source)], chapter, settings)
        assert run.results is not None, run.stderr_head
        outcomes = run.results["exercises"]["softmax"]["outcomes"]
        assert {o[2] for row in outcomes for o in row} == {f"called on {device}"}, run.stderr_head


def test_the_worker_sees_the_gpus_only_when_it_grades_on_cuda(tmp_path, monkeypatch):
    """On cpu (and meta) the worker's GPUs are hidden; with --device cuda it must see them, or no call can run there."""
    from course_lib.grading.sandbox import _worker_env

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for device in ("cpu", "meta"):
        env = _worker_env(tmp_path, device)
        assert env["CUDA_VISIBLE_DEVICES"] == "" and env["COURSE_DEVICE"] == "cpu"
    env = _worker_env(tmp_path, "cuda")
    assert "CUDA_VISIBLE_DEVICES" not in env and env["COURSE_DEVICE"] == "cuda"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the grader's own choice of GPU carries over
    assert _worker_env(tmp_path, "cuda:0")["CUDA_VISIBLE_DEVICES"] == "1"
    assert _worker_env(tmp_path, "cuda:0")["COURSE_DEVICE"] == "cuda:0"
    assert _worker_env(tmp_path)["HOME"] == str(tmp_path) and _worker_env(tmp_path)["CUDA_VISIBLE_DEVICES"] == ""
