# The course's commands. Each target installs the environment first if needed (idempotent:
# a second run finds .venv/.installed newer than pyproject.toml and skips the install).

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The PyTorch build to install when the environment has none (a CPU build where the machine
# provides one; on a CUDA machine pip picks the matching wheel). Override: make lab TORCH=torch
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed
LAB_ARGS ?=
# Jupyter refuses to start as root unless told to (containers, CI, Binder-like images run as root).
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (0: none, all in one process). --dist loadfile keeps each file
# in one worker, so the cells of a notebook run in order in one kernel, as nbval needs; with
# --no-loadscope-reorder the workers take the files longest first (conftest.py, SLOW_FILES).
PYTEST_JOBS ?= 2
# PyTorch threads per test process and per notebook kernel: with one process per core, more threads
# only contend (OpenMP threads spin while they wait) and the suite takes about 7% longer.
TEST_THREADS ?= 1
# Notebooks to re-execute with `make notebooks` (default: every lesson and solution).
NB      ?= $(sort $(wildcard notebooks/*.ipynb solutions/*.ipynb))

.PHONY: help install lab test notebooks exercises badges grade gradescope site slides dist bench gpu-check clean

help:
	@echo "make lab        install if needed, then open JupyterLab on notebooks/ (LAB_ARGS=--no-browser for headless)"
	@echo "make test       install if needed, then run unit tests + nbval over notebooks/, solutions/, exercises/"
	@echo "make notebooks  re-execute the lessons and solutions in place, then regenerate exercises/"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make badges    write Open-in-Colab and Binder links into every notebook: make badges REPO=owner/name [REF=main]"
	@echo "make dist       build the wheel and sdist of the attention-course distribution into dist/"
	@echo "make site       convert the committed lessons to an offline HTML site in build/site/ (runs nothing)"
	@echo "make slides     the committed lessons as offline reveal.js slide decks in build/slides/ (runs nothing; npm fetches reveal.js once)"
	@echo "make bench      the benchmarks (not part of make test): attention vs PyTorch, tiny-transformer and tiny-GPT training, grader throughput"
	@echo "make gpu-check  on a CUDA machine: unit tests, lessons, benchmark, grader on the GPU -> build/gpu-check.json (exit 2 without CUDA)"
	@echo "make grade      grade the notebooks in SUBMISSIONS=dir into OUT=grades (GRADE_ARGS=--seed 1234 ...)"
	@echo "make gradescope build the Gradescope autograder zip in build/gradescope/autograder.zip"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The installer of the course's dependencies: uv (pip-installed into .venv first), which resolves
# and fetches the ~140 packages in parallel: about 8 s, against about 55 s for pip on this kind of
# machine. uv does not read pip's configuration files; where an index or constraint must come from
# pip.conf, install with pip instead: make install INSTALLER=pip
INSTALLER ?= uv
# Python writes bytecode (.pyc) on first import, unless PYTHONDONTWRITEBYTECODE is set, as it is on
# some machines (CI's among them): there every process would compile every module it imports from
# source, every time. So the course's commands clear it (the bytecode goes into .venv and the clone),
# the install compiles nothing (compiling all of torch, transformers and jupyterlab takes about 100 s,
# most of it for modules never imported), and two processes, one per core, then import what the
# course and its tests use, writing their bytecode (scripts/warm_bytecode.py).
export PYTHONDONTWRITEBYTECODE :=

$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --no-compile "$(TORCH)"
ifeq ($(INSTALLER),uv)
	$(BIN)/python -m pip install --no-compile -q uv
	$(BIN)/uv pip install --python $(BIN)/python -e ".[dev,pretrained]"
else
	$(BIN)/python -m pip install --no-compile -e ".[dev,pretrained]"
endif
	$(BIN)/python scripts/warm_bytecode.py torch & pid=$$!; $(BIN)/python scripts/warm_bytecode.py jupyter && wait $$pid
	@touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(ROOT_ARGS) $(LAB_ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -n $(PYTEST_JOBS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(BIN)/python -m course_lib.authoring.notebook_setup
	$(BIN)/python -m course_lib.authoring.execute $(NB)
	$(BIN)/python -m course_lib.authoring.build_exercises

exercises: $(STAMP)
	$(BIN)/python -m course_lib.authoring.notebook_setup
	$(BIN)/python -m course_lib.authoring.build_exercises

# "Open in Colab" and Binder links in every notebook, for the GitHub repository the course is
# published at: make badges REPO=owner/name [REF=main]. Without REPO it writes nothing.
REPO ?=
REF  ?= main
badges: $(STAMP)
	$(BIN)/python -m course_lib.authoring.notebook_setup --badges "$(REPO)" --ref "$(REF)"

# Batch grading: make grade SUBMISSIONS=dir [OUT=grades] [GRADE_ARGS="--seed 1234 --jobs 2"]
SUBMISSIONS ?=
OUT     ?= grades
GRADE_ARGS ?=

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir [OUT=grades]"; exit 2; }
	$(BIN)/course-grade $(SUBMISSIONS) --out $(OUT) $(GRADE_ARGS)

# Gradescope: setup.sh installs $(TORCH), then the course; run_autograder calls course-grade --format gradescope.
gradescope: $(STAMP)
	$(BIN)/python -m course_lib.authoring.gradescope --torch "$(TORCH)" --out build/gradescope/autograder.zip

# The distribution learners pip-install: dist/attention_course-<version>-py3-none-any.whl and the sdist.
# Built from the installed setuptools (no isolated build env, so no download), then checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

site: $(STAMP)
	$(BIN)/python -m course_lib.authoring.site --out build/site

# One reveal.js deck per lesson. reveal.js (version pinned in course_lib/authoring/slides.py) comes from
# the npm registry: `npm pack` once into build/cache/, reused by later builds. Nothing loads from a CDN.
slides: $(STAMP)
	$(BIN)/python -m course_lib.authoring.slides --out build/slides

# Benchmarks print a table each; the attention one also writes JSON. Not part of `make test`.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/attention_bench.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/train_tiny_transformer.py
	$(BIN)/python benchmarks/train_tiny_gpt.py --minutes 15 --threads 2
	$(BIN)/python benchmarks/grade_throughput.py

# On a machine with a CUDA GPU: everything on the GPU, one JSON report. Exits 2 (and says so) without CUDA.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf build dist .pytest_cache .hypothesis
