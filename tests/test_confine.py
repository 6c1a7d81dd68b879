"""OS-level confinement of the grading worker (course_lib.grading.confine): real attacks, no mocks.

Each test forks a child that confines itself and then attacks through ctypes calls into the C
library (not Python's ``open``, which the audit hook would see): it writes into course_lib/ and
an output folder, reads solutions/ and another submission, connects to a TCP port the test
listens on, signals and ptraces the test's own process, and forks. The child reports each
system call's return value and errno through a pipe; the test checks both the refusal and that
nothing happened (files unchanged, no new file, no connection queued, no signal received). The
same attacks without confinement (or with one layer only) succeed, which shows each attack is
real and which layer stops it. Tests wait for the child's exit and its pipe, never a sleep.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from conftest import needs_cuda
from course_lib.grading import confine

ROOT = Path(__file__).resolve().parent.parent
ABI = confine.available()
needs_landlock = pytest.mark.skipif(ABI < 6, reason=f"needs Linux with Landlock ABI >= 6 (this kernel: ABI {ABI})")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
SECRET = b"the reference solution\n"


# ---- what a hostile child does, with libc only ------------------------------------------------


def _call(ret: int) -> dict:
    """A libc call's result: its return value and errno (0 when it succeeded)."""
    return {"ret": int(ret), "errno": ctypes.get_errno() if ret < 0 else 0}


def c_write(path: str) -> dict:
    fd = _libc.open(path.encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    out = _call(fd)
    if fd >= 0:
        _libc.write(fd, b"pwned\n", 6)
        _libc.close(fd)
    return out


def c_read(path: str, directory: bool = False) -> dict:
    fd = _libc.open(path.encode(), os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    out = _call(fd)
    if fd >= 0:
        buf = ctypes.create_string_buffer(4096)
        n = _libc.read(fd, buf, 4096)
        out["data"] = buf.raw[: max(n, 0)].decode("latin-1")
        _libc.close(fd)
    return out


def c_connect(port: int) -> dict:
    s = _libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    out = {"socket": _call(s)}
    if s >= 0:
        addr = socket.inet_aton("127.0.0.1")
        sockaddr = ctypes.create_string_buffer(
            socket.AF_INET.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big") + addr + bytes(8), 16)
        out["connect"] = _call(_libc.connect(s, sockaddr, 16))
        _libc.close(s)
    return out


def c_kill_parent() -> dict:
    return _call(_libc.kill(os.getppid(), signal.SIGUSR1))


def c_ptrace(pid: int) -> dict:
    out = _call(_libc.ptrace(PTRACE_ATTACH, pid, None, None))
    if out["ret"] == 0:  # it worked (unconfined control): let the tracee go again
        os.waitpid(pid, getattr(os, "__WALL", 0x40000000))
        _libc.ptrace(PTRACE_DETACH, pid, None, None)
    return out


def c_fork_bomb(limit: int) -> dict:
    """fork() until it fails or ``limit`` children were made; each child exits at once."""
    made, err = 0, 0
    for _ in range(limit):
        pid = _libc.fork()
        if pid == 0:
            _libc._exit(0)
        if pid < 0:
            err = ctypes.get_errno()
            break
        made += 1
        os.waitpid(pid, 0)
    return {"forks": made, "errno": err}


# ---- running a child ------------------------------------------------------------------------


def in_child(attack, mode: str = "full", sandbox: str | None = None, read_paths: list[str] | None = None,
             abi: int | None = None, devices: list[str] = ()) -> dict:
    """Fork; the child confines itself as ``mode`` says, runs ``attack()`` and sends its result back.

    mode: "full" (Landlock + seccomp), "landlock" (Landlock only), "seccomp" (seccomp only),
    "none" (no confinement: the control that shows the attack works).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            if mode in ("full", "landlock"):
                applied = confine.confine(sandbox, read_paths, abi=abi, seccomp=(mode == "full"), devices=devices)
            elif mode == "seccomp":
                _libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
                confine._install_seccomp(confine._seccomp_machine())
                applied = {"seccomp": True}
            else:
                applied = {}
            result = {"applied": applied, "result": attack()}
        except BaseException as exc:  # noqa: BLE001
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    message = json.loads(b"".join(chunks))
    assert "error" not in message, message.get("error")
    return message["result"]


@pytest.fixture()
def tree(tmp_path):
    """A grader's layout: a repository (course_lib/, solutions/), submissions, an output folder, a sandbox."""
    repo = tmp_path / "repo"
    (repo / "course_lib").mkdir(parents=True)
    (repo / "course_lib" / "__init__.py").write_text("ORIGINAL = True\n")
    (repo / "solutions").mkdir()
    (repo / "solutions" / "01_dot_products.ipynb").write_bytes(SECRET)
    (repo / "README.md").write_text("repo root\n")
    other = tmp_path / "submissions" / "bob"
    other.mkdir(parents=True)
    (other / "01_dot_products.ipynb").write_bytes(b"bob's answers\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "grades.csv").write_text("student,score\n")
    sandbox = tmp_path / "workspace" / "course-grade-alice"
    sandbox.mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".ssh_key").write_bytes(b"private\n")
    denied = [str(repo / "solutions"), str(out), str(tmp_path / "submissions"), str(tmp_path / "workspace")]
    read_paths = confine.default_read_paths() + [str(repo / "course_lib")]
    return {"repo": repo, "other": other, "out": out, "sandbox": sandbox, "home": home, "denied": denied,
            "read_paths": read_paths, "tmp": tmp_path}


def snapshot(root: Path, skip_bytecode: bool = False) -> dict[str, bytes]:
    """Every file under root and its bytes; ``skip_bytecode``: without ``__pycache__`` folders, which the
    trusted processes beside this test (other pytest workers importing course_lib) may fill meanwhile."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not (skip_bytecode and "__pycache__" in p.relative_to(root).parts)}


# ---- files --------------------------------------------------------------------------------


def c_chmod(path: str) -> dict:
    """chmod by path and fchmod through a read-only descriptor (which Landlock alone allows)."""
    out = {"chmod": _call(_libc.chmod(path.encode(), 0o777))}
    fd = _libc.open(path.encode(), os.O_RDONLY)
    out["fchmod"] = _call(_libc.fchmod(fd, 0o606)) if fd >= 0 else _call(fd)
    times = (ctypes.c_long * 4)(1_000_000_000, 0, 1_000_000_000, 0)  # struct timeval[2]: 2001-09-09
    out["utimes"] = _call(_libc.utimes(path.encode(), times))
    return out


def _file_attacks(t: dict, real_target: str):
    repo, sandbox = t["repo"], t["sandbox"]
    solution = repo / "solutions" / "01_dot_products.ipynb"

    def attack():
        symlinked = _call(_libc.symlink(str(solution).encode(), str(sandbox / "link").encode()))
        return {
            "link_solution_into_sandbox": _call(_libc.link(str(solution).encode(), str(sandbox / "hard").encode())),
            "rename_output_into_sandbox": _call(_libc.rename(str(t["out"] / "grades.csv").encode(),
                                                             str(sandbox / "grades.csv").encode())),
            "read_solution_via_symlink": c_read(str(sandbox / "link")) if symlinked["ret"] == 0 else symlinked,
            "write_course_lib_new": c_write(str(repo / "course_lib" / "evil.py")),
            "write_course_lib_existing": c_write(str(repo / "course_lib" / "__init__.py")),
            "write_real_course_lib": c_write(real_target),
            "write_output": c_write(str(t["out"] / "grades.csv")),
            "write_repo_root": c_write(str(repo / "evil.txt")),
            "read_solution": c_read(str(solution)),
            "read_solution_via_proc_root": c_read(f"/proc/self/root{solution}"),
            "read_other_submission": c_read(str(t["other"] / "01_dot_products.ipynb")),
            "read_repo_root": c_read(str(repo / "README.md")),
            "list_repo_root": c_read(str(repo), directory=True),
            "read_home": c_read(str(t["home"] / ".ssh_key")),
            "list_real_home": c_read(os.path.expanduser("~"), directory=True),
            # what it may do: its own folder, course_lib (read), /dev/null
            "write_sandbox": c_write(str(sandbox / "scratch.txt")),
            "read_course_lib": c_read(str(repo / "course_lib" / "__init__.py")),
            "write_dev_null": c_write("/dev/null"),
            "chmod_course_lib": c_chmod(str(repo / "course_lib" / "__init__.py")),
        }

    return attack


@needs_landlock
@pytest.mark.parametrize("mode", ["full", "landlock"])
def test_native_code_cannot_write_or_read_outside_the_sandbox(tree, mode):
    t = tree
    real_target = str(ROOT / "course_lib" / f"evil_{uuid.uuid4().hex}.py")
    before = snapshot(t["tmp"])
    real_before = snapshot(ROOT / "course_lib", skip_bytecode=True)

    stat_before = (t["repo"] / "course_lib" / "__init__.py").stat()
    got = in_child(_file_attacks(t, real_target), mode, str(t["sandbox"]), t["read_paths"])

    allowed = ("write_sandbox", "read_course_lib", "write_dev_null", "chmod_course_lib")
    for key in (k for k in got if k not in allowed):
        expected = (errno.EACCES, errno.EXDEV) if key.startswith(("link", "rename")) else (errno.EACCES,)
        assert got[key]["ret"] == -1 and got[key]["errno"] in expected, (key, got[key])
        assert "data" not in got[key]
    assert got["write_sandbox"]["ret"] >= 0 and got["write_dev_null"]["ret"] >= 0
    assert got["read_course_lib"]["data"] == "ORIGINAL = True\n"
    after = snapshot(t["tmp"])
    assert after.pop("workspace/course-grade-alice/scratch.txt") == b"pwned\n"
    assert os.readlink(t["sandbox"] / "link") == str(t["repo"] / "solutions" / "01_dot_products.ipynb")
    after.pop("workspace/course-grade-alice/link")  # a symlink in its own folder is allowed; reading through it is not
    assert after == before  # no new file, every file unchanged
    assert not os.path.exists(real_target) and snapshot(ROOT / "course_lib", skip_bytecode=True) == real_before
    stat_after = (t["repo"] / "course_lib" / "__init__.py").stat()
    if mode == "full":  # seccomp turns chmod and utimes into no-ops
        assert got["chmod_course_lib"]["fchmod"]["ret"] == 0 and got["chmod_course_lib"]["utimes"]["ret"] == 0
        assert (stat_after.st_mode, stat_after.st_mtime_ns) == (stat_before.st_mode, stat_before.st_mtime_ns)
    else:  # Landlock alone does not guard modes and times: the gap the seccomp layer closes
        assert stat_after.st_mode & 0o777 == 0o606 and stat_after.st_mtime == 1_000_000_000


def test_the_same_file_attacks_succeed_without_confinement(tree):
    """The control: unconfined, the same calls read the secrets and write the files (temp copies only)."""
    t = tree
    harmless_target = str(t["tmp"] / "stand_in_for_real_course_lib.py")  # never the real course_lib here
    got = in_child(_file_attacks(t, harmless_target), "none")
    assert got["read_solution"]["data"] == SECRET.decode()
    assert got["read_solution_via_proc_root"]["data"] == SECRET.decode()
    assert got["read_other_submission"]["data"] == "bob's answers\n"
    assert got["write_course_lib_new"]["ret"] >= 0 and (t["repo"] / "course_lib" / "evil.py").read_text() == "pwned\n"
    assert (t["out"] / "grades.csv").read_text() == "pwned\n"
    assert got["list_real_home"]["ret"] >= 0
    assert got["read_solution_via_symlink"]["data"] == SECRET.decode()
    assert got["link_solution_into_sandbox"]["ret"] == 0 and got["rename_output_into_sandbox"]["ret"] == 0
    assert (t["repo"] / "course_lib" / "__init__.py").stat().st_mode & 0o777 == 0o606
    assert (t["repo"] / "course_lib" / "__init__.py").stat().st_mtime == 1_000_000_000


# ---- network, signals, ptrace, processes -----------------------------------------------------


@pytest.fixture()
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s
    s.close()


def _accepted(listener: socket.socket) -> bool:
    """Whether a connection is waiting (the child has exited, so a completed handshake is queued)."""
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.fixture()
def sigusr1_count():
    count = [0]

    def handler(signum, frame):
        count[0] += 1

    old = signal.signal(signal.SIGUSR1, handler)
    yield count
    signal.signal(signal.SIGUSR1, old)


@pytest.fixture()
def victim():
    """A process outside any sandbox, to ptrace in the control (never the test process itself)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc.pid
    proc.stdin.close()
    proc.wait()


# mode -> whether each attack is refused; abi=3 stands for an older kernel (no TCP rules, no scopes).
LAYERS = {
    ("full", None): {"tcp": True, "signal": True, "ptrace": True, "fork": True},
    ("landlock", None): {"tcp": True, "signal": True, "ptrace": True, "fork": False},
    ("landlock", 3): {"tcp": False, "signal": False, "ptrace": True, "fork": False},
    ("full", 3): {"tcp": True, "signal": True, "ptrace": True, "fork": True},
    ("seccomp", None): {"tcp": True, "signal": True, "ptrace": True, "fork": True},
    ("none", None): {"tcp": False, "signal": False, "ptrace": False, "fork": False},
}


@needs_landlock
@pytest.mark.parametrize("mode,abi", list(LAYERS), ids=[f"{m}-abi{a or ABI}" for m, a in LAYERS])
def test_network_signals_ptrace_and_fork_are_refused_by_the_layer_that_owns_them(
        tree, listener, sigusr1_count, victim, mode, abi):
    expected = LAYERS[(mode, abi)]
    port = listener.getsockname()[1]
    ppid = os.getpid()

    def attack():
        return {"tcp": c_connect(port), "signal": c_kill_parent(),
                "ptrace": c_ptrace(ppid if mode != "none" else victim),  # the control traces a victim, not pytest
                "fork": c_fork_bomb(5)}

    got = in_child(attack, mode, str(tree["sandbox"]), tree["read_paths"], abi=abi)
    tcp = got["tcp"]
    if expected["tcp"]:
        refused_at = tcp["socket"] if tcp["socket"]["ret"] < 0 else tcp["connect"]
        assert refused_at["ret"] == -1 and refused_at["errno"] in (errno.EPERM, errno.EACCES), tcp
        assert not _accepted(listener)
    else:
        assert tcp["connect"]["ret"] == 0 and _accepted(listener)

    if expected["signal"]:
        assert got["signal"] == {"ret": -1, "errno": errno.EPERM}
        assert sigusr1_count[0] == 0
    else:
        assert got["signal"]["ret"] == 0
        assert sigusr1_count[0] == 1

    if expected["ptrace"]:
        assert got["ptrace"] == {"ret": -1, "errno": errno.EPERM}
    else:
        assert got["ptrace"]["ret"] == 0
    assert _tracer_pid(ppid) == 0

    if expected["fork"]:
        assert got["fork"] == {"forks": 0, "errno": errno.EPERM}
    else:
        assert got["fork"]["forks"] == 5


def _tracer_pid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("TracerPid:")).split()[1])


@needs_landlock
def test_a_fork_bomb_makes_no_process_and_threads_still_work(tree):
    """RLIMIT_NPROC binds a non-root user only; the seccomp filter refuses fork even to root."""

    def attack():
        import threading

        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
        raw_fork = {"x86_64": 57}.get(platform.machine())  # the fork system call itself, not glibc's clone
        raw = _call(_libc.syscall(raw_fork)) if raw_fork else {"ret": -1, "errno": errno.EPERM}
        if raw["ret"] == 0:
            _libc._exit(0)
        box = []
        thread = threading.Thread(target=lambda: box.append("ran"))
        thread.start()
        thread.join()
        return {"bomb": c_fork_bomb(1000), "raw_fork": raw, "thread": box}

    got = in_child(attack, "full", str(tree["sandbox"]), tree["read_paths"])
    assert got["bomb"] == {"forks": 0, "errno": errno.EPERM}
    assert got["raw_fork"] == {"ret": -1, "errno": errno.EPERM}
    assert got["thread"] == ["ran"]


# ---- honest code, the API -----------------------------------------------------------------

HONEST = r"""
import os, sys, json
import torch, numpy
from course_lib.grading import confine
sandbox = sys.argv[1]
applied = confine.confine_worker(sandbox, "landlock", denied=sys.argv[2:])
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from course_lib.viz import plot_attention
fig, ax = plt.subplots()
ax.plot(numpy.arange(5), torch.arange(5.0).square().numpy())
fig.savefig(os.path.join(sandbox, "plot.png"))
weights = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
ax = plot_attention(weights, ["q0", "q1", "q2"], ["k0", "k1", "k2", "k3"])
ax.figure.savefig(os.path.join(sandbox, "attention.png"))
import pathlib, shutil, tempfile
shutil.copy2(os.path.join(sandbox, "plot.png"), os.path.join(sandbox, "copy.png"))
pathlib.Path(sandbox, "copy.png").touch()
with tempfile.NamedTemporaryFile(dir=None) as f:
    tmp_inside = os.path.dirname(f.name) == sandbox
print(json.dumps({"applied": applied, "tmp_inside": tmp_inside, "mpl": matplotlib.get_cachedir()}))
"""


@needs_landlock
def test_honest_code_imports_plots_and_saves_while_confined(tree):
    """A fresh process (as the grader's fallback worker): torch first, then confined, then matplotlib and viz."""
    sandbox = str(tree["sandbox"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPL", "XDG_"))}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-c", HONEST, sandbox, *tree["denied"]], cwd=sandbox, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["applied"] == {"landlock_abi": ABI, "seccomp": True}
    assert report["tmp_inside"] and report["mpl"] == sandbox
    for name in ("plot.png", "attention.png", "copy.png"):
        assert (tree["sandbox"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Permission denied" not in proc.stderr and "Error in cpuinfo" not in proc.stderr, proc.stderr


def test_auto_refuses_when_landlock_is_absent(monkeypatch):
    monkeypatch.setenv(confine.ABI_ENV, "0")
    assert confine.available() == 0
    for choice in ("auto", "landlock"):
        with pytest.raises(confine.ConfinementUnavailable, match="--isolation none") as info:
            confine.resolve_isolation(choice)
        assert "container" in str(info.value)
    assert confine.resolve_isolation("none") == "none"
    with pytest.raises(confine.ConfinementUnavailable):
        confine.confine("/tmp", [])
    with pytest.raises(ValueError, match="isolation"):
        confine.resolve_isolation("docker")


@needs_landlock
def test_auto_uses_landlock_where_the_kernel_has_it(monkeypatch):
    monkeypatch.delenv(confine.ABI_ENV, raising=False)
    assert confine.resolve_isolation("auto") == "landlock"
    monkeypatch.setenv(confine.ABI_ENV, "3")
    assert confine.available() == 3  # lowered, never raised above the kernel's


@needs_landlock
def test_a_process_with_a_second_thread_is_not_confined_half_way(tree):
    """Landlock (ABI < 8) and seccomp bind only the calling thread: confine refuses, changing nothing."""

    def attack():
        import threading

        release = threading.Event()
        thread = threading.Thread(target=release.wait)
        thread.start()
        try:
            confine.confine(str(tree["sandbox"]), tree["read_paths"])
        except RuntimeError as exc:
            refused = str(exc)
        else:
            refused = ""
        release.set()
        thread.join()
        return {"refused": refused, "read": c_read(str(tree["repo"] / "solutions" / "01_dot_products.ipynb"))}

    got = in_child(attack, "none")
    assert "2 threads" in got["refused"]
    assert got["read"]["data"] == SECRET.decode()  # nothing was applied


def test_a_read_path_that_holds_a_denied_folder_is_refused(tree):
    with pytest.raises(ValueError, match="overlaps"):
        confine.confine(str(tree["sandbox"]), [str(tree["repo"])], denied=tree["denied"])


# ---- the grading worker itself ------------------------------------------------------------

# The worker's audit hook records a lookup of libc's open() & co. through ctypes (a name list), so
# this attack uses a glibc alias that is not on the list: only the kernel layer can stop it.
WORKER_ATTACK = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.__open64_2(SOLUTION.encode(), os.O_RDONLY)
buf = ctypes.create_string_buffer(100)
got = b"errno %d" % ctypes.get_errno()
if fd >= 0:
    n = libc.read(fd, buf, 100)
    got = buf.raw[: max(n, 0)]
with open("attack.txt", "wb") as out:  # inside the sandbox: allowed
    out.write(got)
'''


@needs_landlock
@pytest.mark.parametrize("isolation,device", [(None, "cpu"), ("none", "cpu"),
                                              pytest.param(None, "cuda", marks=needs_cuda)])
def test_the_grading_worker_confines_the_submission_by_default(tree, isolation, device):
    """``python -m course_lib.grading.worker`` without ``--isolation`` confines; ``--isolation none`` does not.

    On cuda the worker confines itself, then starts CUDA with the GPU's device files it is granted
    (``_prepare_device``); the confinement must refuse the read all the same.
    """
    solution = tree["repo"] / "solutions" / "01_dot_products.ipynb"
    sandbox = tree["sandbox"]
    cells = [(0, f"SOLUTION = {str(solution)!r}\n" + WORKER_ATTACK)]
    torch.save({"cells": cells, "exercises": [], "denied": tree["denied"], "max_numel": 1000, "device": device},
               sandbox / "job.pt")
    command = [sys.executable, "-s", "-m", "course_lib.grading.worker", "--memory", "2048", "--cpu", "60",
               "--fsize", "16", "--trusted-pickle", "0"] + ([] if isolation is None else ["--isolation", isolation])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "HOME": str(tree["home"]), "MPLBACKEND": "Agg"}
    if device == "cuda" and "LD_LIBRARY_PATH" in os.environ:  # where the driver's library may be (as the grader)
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    proc = subprocess.run(command, cwd=sandbox, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(sandbox / "results.pt", weights_only=True)["complete"]
    leaked = (sandbox / "attack.txt").read_bytes()
    if isolation is None:
        assert leaked == b"errno %d" % errno.EACCES
    else:
        assert leaked == SECRET[:100]


_LIMITS_PROBE = r"""
import sys
from course_lib.grading import worker
held = bytearray(768 << 20)  # what the trusted runtime holds before the limits (a CUDA context: gigabytes)
worker._limit_resources(256, 60, 16)
within = bytearray(192 << 20)  # inside the submission's own 256 MB
try:
    beyond = bytearray(512 << 20)
except MemoryError:
    print("limited")
else:
    print("NOT LIMITED")
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the limits are relative only where /proc exists")
def test_the_memory_limit_counts_on_top_of_what_the_runtime_already_holds():
    """A CUDA build of torch holds more than --memory before any submitted code runs; the learner still gets it all."""
    done = subprocess.run([sys.executable, "-c", _LIMITS_PROBE], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]  # an absolute 256 MB limit fails on `within` (MemoryError)
    assert done.stdout.split() == ["limited"]  # and the limit still holds for the submission's own allocations


_CUDA_THREADS_PROBE = r"""
import json, os, sys
import torch
from course_lib.grading import confine
devices, reads = confine.cuda_paths()
confine.confine(sys.argv[1], confine.default_read_paths() + reads, devices=devices, denied=sys.argv[2:])
x = torch.ones(64, 64, device="cuda")
total = float((x @ x).sum())  # the context, the driver's threads and cuBLAS: all after the confinement
status = {}
for tid in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{tid}/status") as f:
        status[tid] = dict(line.split(":", 1) for line in f if line.startswith(("Seccomp:", "NoNewPrivs:")))
try:
    open(sys.argv[2] + "/01_dot_products.ipynb").read()
    read = "read"
except OSError as exc:
    read = exc.errno
print(json.dumps({"devices": devices, "total": total, "status": status, "read": read}))
"""


@needs_landlock
@needs_cuda
def test_the_cuda_drivers_threads_are_born_confined(tree):
    """A worker on a GPU confines itself before its first CUDA call: CUDA still starts (its device files and
    folders are granted), and every thread the driver starts carries the seccomp filter (a thread that existed
    before the confinement would show ``Seccomp: 0`` and stay outside Landlock as well)."""
    solutions = str(tree["repo"] / "solutions")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CUDA_THREADS_PROBE, str(tree["sandbox"]), solutions],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tree["sandbox"])
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["devices"] and got["total"] == 64 * 64 * 64
    assert len(got["status"]) > 1, got["status"]  # the driver started threads of its own
    for tid, fields in got["status"].items():
        assert fields["Seccomp"].strip() == "2" and fields["NoNewPrivs"].strip() == "1", (tid, fields)
    assert got["read"] == errno.EACCES


def test_the_folders_of_the_loaded_drivers_libraries_are_found_from_the_process_map():
    """cuda_paths() grants the folder the dynamic loader took libcuda from (``/usr/local/nvidia/lib64`` in
    containers, outside the system's library folders); the same search finds this process's own C library."""
    folders = confine._loaded_library_folders(("libc.so",))
    assert folders and all(os.path.isabs(f) for f in folders)
    assert any(os.path.exists(os.path.join(f, "libc.so.6")) for f in folders), folders
    assert confine._loaded_library_folders(("libno-such-library-",)) == []
    if not confine.cuda_paths()[0]:  # no NVIDIA device files: nothing to grant
        assert confine.cuda_paths() == ([], [])


def c_open_and_ioctl(path: str, flags: int) -> dict:
    """open(path, flags), then a terminal ioctl (TCGETS) on it: a device that is no terminal answers ENOTTY,
    Landlock answers EACCES where the ioctl right was not granted."""
    fd = _libc.open(path.encode(), flags)
    if fd < 0:
        return {"open": _call(fd)}
    termios = ctypes.create_string_buffer(64)
    out = {"open": {"ret": 0}, "ioctl": _call(_libc.ioctl(fd, 0x5401, termios))}  # TCGETS
    os.close(fd)
    return out


@pytest.mark.skipif(ABI < 5, reason=f"the ioctl right needs Landlock ABI >= 5 (this kernel: ABI {ABI})")
def test_a_granted_device_file_opens_for_writing_and_takes_ioctls_and_no_other_does(tree):
    """What ``devices=`` grants a GPU's files (``cuda_paths``), shown on a device every Linux has: /dev/full.

    Granted as a device: it opens read-write and an ioctl reaches its driver (ENOTTY: not a terminal).
    Granted for reading only: it opens read-only, and the ioctl is refused (EACCES). Not granted: no open."""
    sandbox, reads = str(tree["sandbox"]), tree["read_paths"]
    as_device = in_child(lambda: c_open_and_ioctl("/dev/full", os.O_RDWR), "full", sandbox, reads,
                         devices=["/dev/full"])
    assert as_device["open"]["ret"] == 0 and as_device["ioctl"] == {"ret": -1, "errno": errno.ENOTTY}
    both = lambda: {"rw": c_open_and_ioctl("/dev/full", os.O_RDWR), "ro": c_open_and_ioctl("/dev/full", os.O_RDONLY)}
    read_only = in_child(both, "full", sandbox, reads + ["/dev/full"])
    assert read_only["rw"]["open"] == {"ret": -1, "errno": errno.EACCES}
    assert read_only["ro"]["open"]["ret"] == 0 and read_only["ro"]["ioctl"] == {"ret": -1, "errno": errno.EACCES}
    not_granted = in_child(lambda: c_open_and_ioctl("/dev/full", os.O_RDONLY), "full", sandbox, reads)
    assert not_granted["open"] == {"ret": -1, "errno": errno.EACCES}
    unconfined = in_child(lambda: c_open_and_ioctl("/dev/full", os.O_RDWR), "none")  # the control
    assert unconfined["ioctl"] == {"ret": -1, "errno": errno.ENOTTY}
