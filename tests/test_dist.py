"""make dist: the wheel and sdist of the attention-course distribution pass twine check, and the
wheel installs offline into a fresh venv and imports.

The fresh venv gets no network (``pip install --no-index``): torch and the other dependencies
come from this test's own environment, through a .pth line pointing at its site-packages, so the
install resolves every dependency without downloading one.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

from course_lib import __version__
from course_lib.authoring.build_exercises import ROOT

TIMEOUT = 300


def _run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    return out


def test_make_dist_builds_one_wheel_and_one_sdist_named_for_the_course(dist):
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [p.name for p in wheels] == [f"attention_course-{__version__}-py3-none-any.whl"]
    assert [p.name for p in sdists] == [f"attention_course-{__version__}.tar.gz"]
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "course_lib/__init__.py" in names and "course_lib/data/shakespeare.txt" in names
    assert not any(n.startswith(("notebooks/", "solutions/", "tests/")) for n in names)
    metadata = zipfile.ZipFile(wheels[0]).read(f"attention_course-{__version__}.dist-info/METADATA").decode()
    assert "Provides-Extra: pretrained" in metadata
    assert 'Requires-Dist: transformers>=5.23.0; extra == "pretrained"' in metadata
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any(name in line for line in base for name in ("transformers", "sentence-transformers", "gt-all"))


def test_twine_check_passes(dist):
    result = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir()))])
    assert result.stdout.count("PASSED") == 2


def test_the_wheel_installs_offline_into_a_fresh_venv_and_imports(dist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # the dependencies (torch, numpy, ...) from this environment, after the venv's own site-packages
    (Path(purelib) / "_course_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(dist.glob("*.whl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHONPATH"))}
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-compile",
          "--no-cache-dir", str(wheel)], env=env)
    code = ("import course_lib, importlib.metadata as m, torch; "
            "x = torch.randn(2, 3, 4); "
            "out = course_lib.scaled_dot_product_attention(x, x, x); "
            "print(course_lib.__file__); print(m.version('attention-course')); print(tuple(out.shape))")
    lines = _run([str(python), "-c", code], env=env, cwd=tmp_path).stdout.splitlines()
    assert lines[0].startswith(purelib)  # the installed wheel, not this checkout
    assert lines[1:] == [__version__, "(2, 3, 4)"]
    assert (env_dir / "bin" / "course-grade").exists()  # the console script came with it



