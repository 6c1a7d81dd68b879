"""The grader's defaults and limits, and the order of statuses (most severe first)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the course folder (solutions/ lives here)
DEFAULT_TIMEOUT = 60
DEFAULT_MEMORY_MB = 2048
DEFAULT_SEED = 1
MIN_MEMORY_MB = 512  # for the submission itself, on top of torch and course_lib (the worker counts from there)
FILE_SIZE_MB = 64  # the largest file the submission may write
MAX_NOTEBOOK_BYTES = 50 << 20
MAX_OUTCOME_NUMEL = 1 << 20  # a returned tensor larger than this comes back as its shape only
MAX_RESULTS_BYTES = 256 << 20
STATUS_ORDER = ("grader-error", "invalid-notebook", "timeout", "memory", "crash", "sandbox-violation",
                "syntax-error", "missing-function", "not-attempted", "no-submission", "ok")
