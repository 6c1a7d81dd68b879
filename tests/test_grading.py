"""course-grade: every submission gets a row, hostile code cannot change a score, output is reproducible.

One batch (module fixture) grades, with --jobs 2: the solution of every chapter (one student
folder), the generated exercise notebook of every chapter, the hostile notebooks of
tests/grading_fixtures.py and a few buggy ones. Chapters are discovered, so chapters added
later are covered without editing this file.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import grading_fixtures as fx
from conftest import needs_cuda
from course_lib import checks
from course_lib.checks import core
from course_lib.checks.handwritten import ready_made_in_cells, ready_made_in_function
from course_lib.checks.points import points_for
from course_lib.grading.gradescope import results as gradescope_results
from course_lib.grading import (
    _decode_outcomes,
    _load_results,
    discover_chapters,
    grade,
    grade_exercise,
    main,
    python_source,
)
from course_lib.grading import confine
from course_lib.grading.sandbox import ForkServer, Settings, WorkerUnavailable, preflight

TIMEOUT = 20  # seconds per notebook; a worker needs ~3 s (importing torch), more on a busy machine
MEMORY = 1024  # MB: the memory blow-up fixture hits it quickly
SEED = 7
BUGGY_KEYS = ["unstable_softmax", "scale_forgotten", "mask_after_softmax"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    out = root / "out"
    (out / "feedback").mkdir(parents=True)  # exists already, so that writing into it is a real attempt
    cls = root / "class"
    for name in fx.chapters():
        fx.write(fx.solution(name), cls / "good_student" / f"{name}.ipynb")
        if (fx.EXERCISES / f"{name}.ipynb").exists():
            fx.write(fx.exercise(name), cls / f"unfilled_{name}.ipynb")
    hostile = fx.hostile_notebooks(cls, out)
    buggy = fx.buggy_notebooks(cls, only=BUGGY_KEYS)
    rows = grade([cls], out, timeout=TIMEOUT, memory=MEMORY, jobs=2, seed=SEED, progress=False)
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    return SimpleNamespace(root=root, out=out, cls=cls, rows=rows, table=table, hostile=hostile, buggy=buggy,
                           by_student={r.student: r for r in rows})


def _feedback(batch, student: str) -> str:
    return (batch.out / "feedback" / f"{student}.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Every submission gets a row; solutions score full marks, exercises zero.
# --------------------------------------------------------------------------------------------


def test_every_submission_gets_exactly_one_row(batch):
    notebooks = sorted(p.relative_to(batch.cls.parent).as_posix() for p in batch.cls.rglob("*.ipynb"))
    assert sorted(r.notebook for r in batch.rows) == notebooks
    assert [(r["student"], r["notebook"]) for r in batch.table] == [(r.student, r.notebook) for r in batch.rows]
    assert [(r["student"], r["notebook"]) for r in batch.table] == sorted((r["student"], r["notebook"]) for r in batch.table)
    assert all(r["status"] for r in batch.table)
    for student in {r.student for r in batch.rows}:
        assert (batch.out / "feedback" / f"{student}.md").is_file()


def test_the_solution_of_every_chapter_scores_full_marks(batch):
    good = {r.chapter: r for r in batch.rows if r.student == "good_student"}
    assert set(good) == set(fx.chapters())  # one row per chapter, identified from the file name
    for chapter, row in good.items():
        assert row.status == "ok", (chapter, row.reasons)
        assert row.grades and row.total == pytest.approx(row.max_points), (chapter, [(g.name, g.earned) for g in row.grades])
        for g in row.grades:
            assert g.points == points_for(g.name) and g.report.diagnoses == []
    feedback = _feedback(batch, "good_student")
    assert all(f"## {chapter} " in feedback for chapter in good)  # one file, a section per notebook


def test_gradescope_results_of_every_solution_match_the_schema(batch):
    good = [r for r in batch.rows if r.student == "good_student"]
    data = json.loads(json.dumps(gradescope_results(good)))
    assert fx.gradescope_schema_errors(data) == []
    assert len(data["tests"]) == sum(len(r.grades) for r in good) > 0
    assert all(t["score"] == t["max_score"] and t["visibility"] == "visible" for t in data["tests"])
    assert data["score"] == pytest.approx(sum(r.max_points for r in good))
    thief = gradescope_results([batch.by_student["reads_solutions"]])
    assert fx.gradescope_schema_errors(thief) == [] and thief["score"] == 0
    assert "tried to open <solutions>" in thief["output"]


def test_generated_exercises_score_zero_without_crashing(batch):
    unfilled = [r for r in batch.rows if r.student.startswith("unfilled_")]
    assert len(unfilled) == len(list(fx.EXERCISES.glob("*.ipynb"))) > 0
    for row in unfilled:
        assert row.status == "not-attempted" and row.chapter and row.total == 0 and row.max_points > 0, \
            (row.student, row.reasons)
        assert row.reasons == ["not attempted: every exercise still raises NotImplementedError "
                               "(the exercise cells are as distributed)"]
        assert row.version == "current"  # exercises/ is stamped with the version the grader computes
        assert all(g.state == "not-implemented" for g in row.grades)
        assert "not implemented yet" in _feedback(batch, row.student)


# --------------------------------------------------------------------------------------------
# Hostile submissions: the right status, and the rest of the batch graded normally.
# --------------------------------------------------------------------------------------------


HOSTILE = ["memory_blowup", "calls_sys_exit", "calls_os_exit", "segfault", "huge_print",
           "prints_warnings", "not_json", "renamed_function", "no_exercises", "monkeypatch", "reads_solutions",
           "writes_output", "uses_torch_softmax"]


@pytest.mark.parametrize("student", HOSTILE)
def test_each_hostile_submission_gets_its_status(batch, student):
    row = batch.by_student[student]
    assert row.status == batch.hostile[student], (row.status, row.reasons)
    csv_row = next(r for r in batch.table if r["student"] == student)
    assert csv_row["status"] == row.status and csv_row["reason"] == "; ".join(row.reasons)


LOOP_TIMEOUT = 5  # seconds: the endless loop is graded apart, so the big batch need not wait TIMEOUT for it


def test_an_endless_loop_is_stopped_at_the_time_limit_and_the_others_are_graded(tmp_path):
    class_ = tmp_path / "class"
    fx.write(fx.endless_loop(), class_ / "infinite_loop.ipynb")
    fx.write(fx.solution(fx.chapter("01")), class_ / "good_student.ipynb")
    rows = {r.student: r for r in grade([class_], tmp_path / "out", timeout=LOOP_TIMEOUT, memory=MEMORY, jobs=2,
                                        seed=SEED, progress=False)}
    loop, good = rows["infinite_loop"], rows["good_student"]
    reason = "; ".join(loop.reasons)
    assert loop.status == "timeout" and loop.total == 0, (loop.status, reason)
    assert f"{LOOP_TIMEOUT} s time limit while running cell" in reason and "while True" in reason
    assert good.status == "ok" and good.total == good.max_points > 0, (good.status, good.reasons)


def test_reasons_say_what_happened(batch):
    reason = {s: "; ".join(r.reasons) for s, r in batch.by_student.items()}
    assert "SIGSEGV" in reason["segfault"]
    assert "exited with code 1" in reason["calls_os_exit"]
    assert f"{MEMORY} MB" in reason["memory_blowup"]
    assert "sys.exit()" in reason["calls_sys_exit"]
    assert reason["renamed_function"] == "not defined: dot"
    assert "not a valid notebook" in reason["not_json"]


def test_a_warning_an_exit_or_a_huge_print_costs_no_points(batch):
    for student in ("prints_warnings", "calls_sys_exit", "huge_print", "memory_blowup"):
        row = batch.by_student[student]
        assert row.total == pytest.approx(row.max_points) and row.max_points > 0, student


def test_a_renamed_function_scores_zero_and_the_others_are_graded(batch):
    grades = {g.name: g for g in batch.by_student["renamed_function"].grades}
    assert grades["dot"].state == "missing" and grades["dot"].earned == 0
    assert all(g.earned == g.points for name, g in grades.items() if name != "dot")
    assert "define a function named `dot`" in _feedback(batch, "renamed_function")


def test_monkeypatching_comparisons_or_the_checks_changes_nothing(batch):
    patched, twin = batch.by_student["monkeypatch"], batch.by_student["monkeypatch_twin"]
    assert patched.total == twin.total < patched.max_points
    softmax = next(g for g in patched.grades if g.name == "softmax")
    assert softmax.earned < softmax.points and softmax.report.diagnoses == ["no_normalisation"]


def test_the_sandbox_refuses_the_solutions_and_the_output_folder(batch):
    thief = batch.by_student["reads_solutions"]
    assert thief.total == 0 and "sandbox-violation: tried to open <solutions> for reading" in thief.reasons
    vandal = batch.by_student["writes_output"]
    assert "sandbox-violation: tried to open <output>/grades.csv for writing" in vandal.reasons
    # its functions are right (they pass every property), but the attempt voids the notebook's marks
    assert vandal.max_points > 0 and vandal.total == 0
    assert all(g.report is not None and g.report.passed == g.report.total for g in vandal.grades)
    assert "every exercise scores zero" in _feedback(batch, "writes_output")
    assert not (batch.out / "evil.txt").exists() and not (batch.out / "feedback" / "mallory.md").exists()
    assert (batch.out / "grades.csv").read_text(encoding="utf-8").startswith("student,notebook,chapter,status,reason,")


def test_honest_code_that_plots_is_never_flagged(batch):
    """matplotlib (its font cache and config), course_lib.viz and the explorers work inside the confined worker."""
    row = batch.by_student["honest_plots"]
    assert row.status == "ok" and not row.reasons, row.reasons
    assert row.max_points > 0 and row.total == row.max_points


NATIVE_ATTEMPTS = {
    "native_writes_course_lib": "open()", "native_writes_output": "open()", "native_reads_solutions": "open()",
    "native_reads_another_submission": "openat()", "native_opens_a_socket": "socket()",
    "native_signals_the_parent": "kill()", "native_ptraces_the_parent": "ptrace()", "native_fork_bomb": "fork()",
}


@pytest.mark.parametrize("student", sorted(NATIVE_ATTEMPTS))
def test_native_code_attacks_are_violations_that_score_zero(batch, student):
    row = batch.by_student[student]
    assert row.status == "sandbox-violation" and row.total == 0
    assert f"calling the C library's {NATIVE_ATTEMPTS[student]} through ctypes" in " ".join(row.reasons)


def test_native_code_attacks_wrote_and_read_nothing(batch):
    assert not fx.PLANTED.exists()  # nothing planted in course_lib/ (the integrity hash would also fail the batch)
    assert not (batch.out / "native.txt").exists()
    # the alias the audit hook does not list reached the kernel, which refused it: nothing was read
    alias = batch.by_student["native_alias_reads_solutions"]
    assert alias.status == "ok" and alias.total == alias.max_points > 0
    assert "stolen" not in _feedback(batch, "native_alias_reads_solutions")
    assert all(r.status != "grader-error" for r in batch.rows)  # the fork server survived the signal and ptrace


@needs_cuda
def test_native_code_attacks_fail_the_same_way_when_the_worker_holds_a_gpu(tmp_path):
    """With ``--device cuda`` the worker confines itself, then opens the GPU's device files (granted to it) and
    starts CUDA: the native attacks must get the statuses they get on a CPU worker (the batch above), and
    nothing may be written or read, while an honest notebook's calls run on the GPU."""
    out, cls = tmp_path / "out", tmp_path / "class"
    (out / "feedback").mkdir(parents=True)
    two = fx.chapter("02")
    fx.write(fx.solution(two), cls / "good_student" / f"{two}.ipynb")  # the submission one attack reads
    statuses = {}

    def make(student: str, nb, status: str) -> None:
        fx.write(nb, cls / f"{student}.ipynb")
        statuses[student] = status

    fx.native_hostile(cls, out, make, fx.solution(fx.chapter("01")))
    rows = {r.student: r for r in grade([cls], out, timeout=TIMEOUT, memory=MEMORY, jobs=2, seed=SEED,
                                        progress=False, device="cuda")}
    assert {s: rows[s].status for s in statuses} == statuses, {s: rows[s].reasons for s in statuses}
    for student in NATIVE_ATTEMPTS:
        assert rows[student].total == 0, student
    assert not fx.PLANTED.exists() and not (out / "native.txt").exists()
    alias = rows["native_alias_reads_solutions"]
    assert alias.total == alias.max_points > 0
    assert "stolen" not in (out / "feedback" / "native_alias_reads_solutions.md").read_text(encoding="utf-8")
    good = rows["good_student"]
    assert good.status == "ok" and good.total == good.max_points > 0, good.reasons


@pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "fresh-process"])
def test_the_preflight_worker_starts_on_the_device_or_says_why_not(tmp_path, fork_server):
    """``grade`` starts one empty worker before a batch on cuda. On a machine without CUDA (a CPU build of
    torch) that worker fails in its set-up, and the grader must say so once, with torch's own words, instead
    of a "crash" on every row; where CUDA is available the same empty worker must finish."""
    isolation = "landlock" if confine.available() else "none"
    settings = Settings(TIMEOUT, MEMORY, SEED, [], workspace=str(tmp_path), isolation=isolation, device="cuda")
    settings.server = ForkServer(str(tmp_path), "cuda") if fork_server else None
    try:
        if torch.cuda.is_available():
            assert preflight(settings) is None
        else:
            with pytest.raises(WorkerUnavailable, match=r"cannot start on device 'cuda'.*nothing was graded.*"
                                                       r"Torch not compiled with CUDA enabled.*--device cpu") as info:
                preflight(settings)
            assert "\n" not in str(info.value)
    finally:
        if settings.server is not None:
            settings.server.close()


def test_a_ready_made_function_loses_the_hand_written_property(batch):
    softmax = next(g for g in batch.by_student["uses_torch_softmax"].grades if g.name == "softmax")
    # torch.softmax also gives NaN on an all -inf row, where the task asks for zeros
    assert [r.title for r in softmax.report.results if not r.passed] == [
        "a fully masked row (all -inf) gives zeros, not NaN", "written by hand (not the ready-made torch.softmax)"]
    assert softmax.earned == pytest.approx(points_for("softmax") * (softmax.report.total - 2) / softmax.report.total)
    text = _feedback(batch, "uses_torch_softmax")
    assert "[FAIL] written by hand (not the ready-made torch.softmax)" in text and "uses torch.softmax" in text


def test_buggy_submissions_get_their_own_diagnosis_in_the_feedback(batch):
    assert set(k for _, _, k in batch.buggy.values()) == set(BUGGY_KEYS)
    for student, (_, function, key) in batch.buggy.items():
        grade_ = next(g for g in batch.by_student[student].grades if g.name == function)
        assert grade_.report.diagnoses == [key], (student, grade_.report.diagnoses)
        assert grade_.earned < grade_.points
        assert f"Diagnosis: {core.diagnosis_message(grade_.exercise, key)}" in _feedback(batch, student)


def test_feedback_shows_no_reference_code_no_hidden_values_no_temp_paths(batch):
    for path in (batch.out / "feedback").glob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "attn_mask=mask" not in text and "def " not in text, path.name
        assert not re.search(r"shape \([\d, ]*\) \[", text), path.name  # tensors shown by dtype and shape only
        assert "course-grade-" not in text and str(batch.root) not in text, path.name


def test_the_same_inputs_and_seed_give_the_same_files_byte_for_byte(batch, tmp_path):
    # a bad file, a ready-made function and one diagnosed mistake (its feedback draws seeded random inputs)
    students = ["not_json", "uses_torch_softmax", next(s for s in batch.buggy if s.endswith("scale_forgotten"))]
    runs = []
    for run, fork_server in (("first", True), ("second", False)):  # a forked worker, then a fresh process
        class_ = tmp_path / run / "class"  # the same folder name as the big batch: the same notebook labels
        class_.mkdir(parents=True)
        for student in students:
            (class_ / f"{student}.ipynb").write_bytes((batch.cls / f"{student}.ipynb").read_bytes())
        grade([class_], tmp_path / run / "out", timeout=TIMEOUT, memory=MEMORY, jobs=2, seed=SEED, progress=False,
              fork_server=fork_server)
        runs.append(tmp_path / run / "out")
    first, second = runs
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len(files) == len(students) + 3  # feedback, grades.csv, summary.md, run.json
    for name in files:
        if name == Path("run.json"):  # its date is the time of the run; the rest is the same
            dated = [json.loads((run / name).read_text(encoding="utf-8")) for run in runs]
            for record in dated:
                record.pop("date")
                record["settings"].pop("fork_server")
            assert dated[0] == dated[1]
            continue
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for student in students:  # and the same as in the big batch, graded alongside the rest of it
        assert (first / "feedback" / f"{student}.md").read_bytes() == (batch.out / "feedback" / f"{student}.md").read_bytes()
    big = {r["student"]: {k: v for k, v in r.items() if v} for r in batch.table}
    with open(first / "grades.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            assert {k: v for k, v in r.items() if v} == big[r["student"]]


# --------------------------------------------------------------------------------------------
# The command line.
# --------------------------------------------------------------------------------------------


def test_bad_command_line_input_exits_2_with_a_message(tmp_path, capsys):
    for argv, message in [
        ([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], "no such file or folder"),
        ([str(tmp_path), "--out", str(tmp_path / "o"), "--memory", "10"], "--memory must be at least"),
        ([str(tmp_path), "--out", str(tmp_path / "o")], "no notebooks found"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "course-grade"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--timeout" in result.stdout and "--memory" in result.stdout


# --------------------------------------------------------------------------------------------
# The pieces, without a sandbox.
# --------------------------------------------------------------------------------------------


def test_capture_records_every_exercise_without_calling_the_function():
    def never(*args, **kwargs):
        raise AssertionError("called")

    with core.capture() as captured:
        report = checks.check_softmax(never, seed=3)
    assert report.status == "captured" and [c.exercise.name for c in captured] == ["softmax"]
    assert captured[0].fn is never


def test_judge_is_the_same_verdict_as_run_check(capsys):
    def forgot_scale(query, key):
        return query @ key.transpose(-2, -1)

    with core.capture() as captured:
        checks.check_scaled_scores(forgot_scale)
    exercise = captured[0].exercise
    report = core.judge(exercise, core.compute_outcomes(exercise, forgot_scale))
    direct = checks.check_scaled_scores(forgot_scale)
    assert (report.status, report.diagnoses, [r.passed for r in report.results]) == \
        (direct.status, direct.diagnoses, [r.passed for r in direct.results]) == \
        ("failed", ["scale_forgotten"], [False] * 4)  # the three written properties and the non-contiguous copy
    assert "Diagnosis:" in capsys.readouterr().out


def test_the_seed_changes_the_random_inputs_only():
    first, second = (discover_chapters(fx.SOLUTIONS, seed)["01_dot_products"] for seed in (1, 2))
    ex1, ex2 = first.exercises[0].exercise, second.exercises[0].exercise
    assert torch.equal(ex1.properties[0].cases[0].args[0], ex2.properties[0].cases[0].args[0])  # hand-made example
    assert not torch.equal(ex1.properties[1].cases[0].args[0], ex2.properties[1].cases[0].args[0])


def test_forged_or_malformed_results_are_rejected(tmp_path):
    exercise = discover_chapters(fx.SOLUTIONS, 1)["01_dot_products"].exercises[0]
    shape = [len(p.cases) for p in exercise.exercise.properties]
    assert _decode_outcomes([[("ok", torch.zeros(()))] * n for n in shape[:-1]], exercise.exercise) is None
    assert _decode_outcomes([[("sneaky", 1)] * n for n in shape], exercise.exercise) is None
    assert _decode_outcomes([[("ok", torch.zeros(()))] * n for n in shape], exercise.exercise) is not None
    forged = tmp_path / "results.pt"
    forged.write_bytes(b"not a torch file")
    assert _load_results(forged)[0] is None
    torch.save([1, 2, 3], forged)
    assert _load_results(forged)[0] is None
    # a returned object that cannot travel comes back by its type name, as in the notebook
    entry = {"status": "ok", "outcomes": [[("ok", {"__opaque__": "ndarray"})] * n for n in shape]}
    graded = grade_exercise(exercise, entry, [])
    assert graded.earned == 0 and "returned ndarray, expected a torch.Tensor" in graded.report.results[1].detail


def test_python_source_neutralises_magics_and_shell_lines():
    cell = "%matplotlib inline\n!pip install foo\nfiles = !ls\nx = 1\nif x:\n    %time y = 2\nprint?"
    assert python_source(cell) == "pass\npass\npass\nx = 1\nif x:\n    y = 2\npass"
    assert python_source("%%bash\nrm -rf /") == ""
    assert python_source("%%time\nz = 3") == "z = 3"


@pytest.mark.parametrize("cells, exercise, expected", [
    (["import torch.nn.functional as F\ndef softmax(x, dim=-1):\n    return F.softmax(x, dim)"], "softmax", ["F.softmax"]),
    (["import torch\ndef softmax(x, dim=-1):\n    return x.softmax(dim)"], "softmax", ["the tensor method .softmax(...)"]),
    (["from torch import softmax as sm\ndef softmax(x, dim=-1):\n    return sm(x, dim)"], "softmax", ["sm (= torch.softmax)"]),
    (["import torch\ndef helper(x):\n    return torch.softmax(x, -1)", "def softmax(x, dim=-1):\n    return helper(x)"],
     "softmax", ["torch.softmax"]),
    (["import torch\nsoftmax = lambda x, dim=-1: torch.softmax(x, dim)"], "softmax", ["torch.softmax"]),
    (["from course_lib import softmax"], "softmax", ["softmax = course_lib.softmax (= course_lib.attention.softmax)"]),
    (["from course_lib import softmax\nimport math\ndef attention(q, k, v, mask=None):\n"
      "    return softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) @ v"], "attention", []),
    (["import torch.nn.functional as F\ndef attention(q, k, v, mask=None):\n"
      "    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)"], "attention", ["F.scaled_dot_product_attention"]),
    (["def dot(u, v):\n    return u @ v"], "dot", ["the @ operator"]),
    (["import course_lib.checks.basics as b\ndef cosine_similarity(u, v):\n    return b._ref_cosine(u, v)"],
     "cosine_similarity", ["b._ref_cosine (= course_lib.checks.basics._ref_cosine)"]),
    (["def softmax(x, dim=-1):\n    z = x - x.amax(dim, keepdim=True)\n    return z.exp() / z.exp().sum(dim, keepdim=True)"],
     "softmax", []),
    # the course's own implementation of the exercise, however it is reached, is a ready-made function
    (["import course_lib\nsoftmax = course_lib.softmax"], "softmax", ["softmax = course_lib.softmax (= course_lib.attention.softmax)"]),
    (["import course_lib\ndef softmax(x, dim=-1):\n    return course_lib.attention.softmax(x, dim)"], "softmax",
     ["course_lib.attention.softmax"]),
    (["from course_lib.efficient import online_softmax"], "online_softmax",
     ["online_softmax = course_lib.efficient.online_softmax"]),
    (["import course_lib.efficient as eff\ndef tiled_attention(q, k, v, block_size):\n"
      "    return eff.flash_attention(q, k, v)"], "tiled_attention", ["eff.flash_attention (= course_lib.efficient.flash_attention)"]),
    (["from course_lib import multihead\ndef split_heads(x, num_heads):\n    return multihead.split_heads(x, num_heads)"],
     "split_heads", ["multihead.split_heads (= course_lib.multihead.split_heads)"]),
    (["import course_lib\ndef softmax(x, dim=-1):\n    return course_lib.efficient.online_softmax(x.movedim(dim, -1)).movedim(-1, dim)"],
     "softmax", ["course_lib.efficient.online_softmax"]),
    (["from course_lib.efficient import tiled_attention as ta\ndef attention(q, k, v, mask=None):\n    return ta(q, k, v)"],
     "attention", ["ta (= course_lib.efficient.tiled_attention)"]),
    # course_lib's other functions stay allowed where the task permits them (softmax inside multi-head attention)
    (["from course_lib import softmax\ndef multi_head_attention(x, Wq, Wk, Wv, Wo, num_heads):\n"
      "    return softmax(x @ Wq @ (x @ Wk).transpose(-2, -1)) @ (x @ Wv) @ Wo"], "multi_head_attention", []),
])
def test_ready_made_functions_are_found_in_the_cells(cells, exercise, expected):
    assert ready_made_in_cells(exercise, cells) == expected


def softmax_with_f(x, dim=-1):
    import torch.nn.functional as F

    return F.softmax(x, dim=dim)


def test_the_notebook_check_names_a_ready_made_function(capsys):
    assert ready_made_in_function("softmax", softmax_with_f) == ["F.softmax"]
    report = checks.check_softmax(softmax_with_f)
    # F.softmax gives NaN on an all -inf row, where the task asks for zeros: that property fails too
    assert report.status == "failed" and report.diagnoses == ["nan_on_fully_masked"]
    assert [r.title for r in report.results if not r.passed] == [
        "a fully masked row (all -inf) gives zeros, not NaN", "written by hand (not the ready-made torch.softmax)"]
    out = capsys.readouterr().out
    assert "[FAIL] written by hand (not the ready-made torch.softmax)" in out and "uses F.softmax" in out
    assert "No known mistake matches" not in out


def test_a_grader_bug_on_one_notebook_is_a_row_not_a_crash(batch, tmp_path, monkeypatch):
    import course_lib.grading as grading

    def broken(*args, **kwargs):
        raise KeyError("a bug in the grader")

    monkeypatch.setattr(grading.scoring, "identify_chapter", broken)
    small = tmp_path / "small"
    small.mkdir()
    for student in ("not_json", "renamed_function"):
        (small / f"{student}.ipynb").write_bytes((batch.cls / f"{student}.ipynb").read_bytes())
    rows = {r.student: r for r in grade([small], tmp_path / "out", timeout=TIMEOUT, memory=MEMORY, progress=False)}
    assert rows["not_json"].status == "invalid-notebook"  # graded before the bug is reached
    assert rows["renamed_function"].status == "grader-error"
    assert "KeyError" in rows["renamed_function"].reasons[0]
    assert (tmp_path / "out" / "grades.csv").read_text(encoding="utf-8").count("\n") == 3


def test_a_check_that_wraps_the_learners_function_is_graded_through_its_wrapper(tmp_path):
    """check_cross_attention wraps the function (to explain a crash when L != S): the grader calls the wrapper."""
    if not hasattr(checks, "check_cross_attention"):
        pytest.skip("chapter 06's checks are not there yet")
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    good = ("import math\nfrom course_lib import softmax\n\n"
            "def cross_attention(x_dec, x_enc, W_query, W_key, W_value):\n"
            "    q, k, v = x_dec @ W_query, x_enc @ W_key, x_enc @ W_value\n"
            "    return softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) @ v\n")
    keys_from_decoder = good.replace("x_enc @ W_key", "x_dec @ W_key")
    solutions, class_ = tmp_path / "solutions", tmp_path / "class"
    solutions.mkdir()
    class_.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell(good), new_code_cell("check_cross_attention(cross_attention);")]),
                   solutions / "06_cross.ipynb")
    for student, source in (("good", good), ("swapped", keys_from_decoder)):
        nbformat.write(new_notebook(cells=[new_code_cell(source)]), class_ / f"{student}.ipynb")
    chapter = discover_chapters(solutions, SEED)["06_cross"]
    assert [(g.exercise.name, g.check) for g in chapter.exercises] == [("cross_attention", "check_cross_attention")]
    rows = {r.student: r for r in grade([class_], tmp_path / "out", timeout=TIMEOUT, memory=MEMORY, jobs=2,
                                        seed=SEED, solutions=solutions, progress=False)}
    assert rows["good"].status == "ok" and rows["good"].total == rows["good"].max_points == points_for("cross_attention")
    swapped = rows["swapped"].grades[0]
    assert swapped.earned < swapped.points and "keys_from_decoder" in swapped.report.diagnoses
    assert any("LengthMismatchError" in r.detail for r in swapped.report.results if not r.passed)


def test_submissions_are_found_per_student_and_links_are_not_followed(tmp_path):
    from course_lib.grading import find_submissions

    class_ = tmp_path / "class"
    (class_ / "dan" / "ch").mkdir(parents=True)
    (class_ / "eve").mkdir()
    (class_ / ".ipynb_checkpoints").mkdir()
    (class_ / "alice.ipynb").write_text("{}")
    (class_ / "notes.txt").write_text("not a notebook")
    (class_ / "dan" / "ch" / "01.ipynb").write_text("{}")
    (class_ / "mallory.ipynb").symlink_to(fx.SOLUTIONS / f"{fx.chapters()[0]}.ipynb")
    found = [(s.student, s.notebook, s.path is not None, s.problem) for s in find_submissions([class_], exclude=[])]
    assert found == [
        ("alice", "class/alice.ipynb", True, ""),
        ("dan", "class/dan/ch/01.ipynb", True, ""),
        ("eve", "class/eve/", False, "no .ipynb notebook in the folder"),
        ("mallory", "class/mallory.ipynb", False, "a symbolic link, not a notebook"),
    ]
