"""OS-level confinement of a grading worker: Landlock for files and TCP, seccomp for the rest.

The grading worker's audit hook (:mod:`course_lib.grading.worker`) only sees what Python code
does; native code (``ctypes.CDLL(None).open(...)``, ``kill``, ``ptrace``, ``fork``) walks around
it. :func:`confine` makes the kernel refuse the same things, to the current process and to
anything it could start, for good: nothing here can be undone, not even by the process itself.
It needs no root and no dependency: the system calls are made with :mod:`ctypes`.

Layer 1, Landlock (Linux >= 5.13; ``Documentation/userspace-api/landlock.rst``,
https://docs.kernel.org/userspace-api/landlock.html, and ``include/uapi/linux/landlock.h``).
``landlock_create_ruleset`` (444), ``landlock_add_rule`` (445) and ``landlock_restrict_self``
(446) are the generic system call numbers, the same on x86_64 and aarch64; the process first
sets ``PR_SET_NO_NEW_PRIVS``. The ruleset handles every access right the kernel's ABI knows:

* ABI 1: execute, write, read, read a directory, remove, make (char, dir, regular, socket, fifo,
  block, symlink); ABI 2: ``REFER`` (rename or link across folders); ABI 3: ``TRUNCATE``;
  ABI 5: ``IOCTL_DEV``. Granted: everything inside the sandbox folder; read and write of
  ``/dev/null``; read (no execute: shared libraries are mapped, never executed with execve) of
  the read set (:func:`default_read_paths`). Everything else (the repository, ``solutions/``,
  the other submissions, the output folder, the home folder) is refused with ``EACCES``. A worker
  that grades on a GPU is also granted the GPU's device files (read, write, ``ioctl``) and the
  driver's folders (:func:`cuda_paths`), and makes its CUDA context only after confining itself.
* ABI 4: ``handled_access_net`` with TCP bind and connect and no rule: every TCP bind and
  connect is refused.
* ABI 6: ``scoped`` ``LANDLOCK_SCOPE_SIGNAL`` and ``LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET``: no
  signal to, and no abstract unix socket of, a process outside this Landlock domain.
* every ABI: a Landlock-confined process cannot ptrace a process outside its domain.
* ABI 7 adds only logging flags (``landlock_restrict_self`` flags); the defaults are kept.

Layer 2, a seccomp filter (``Documentation/userspace-api/seccomp_filter.rst``), a classic BPF
program written here (x86_64 and aarch64; elsewhere the layer is reported as absent). It refuses
with ``EPERM``: new processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD`` or with a
namespace flag; ``clone3`` gets ``ENOSYS`` so that the C library falls back to ``clone`` for
threads), ``execve``, ``ptrace``, ``process_vm_readv/writev``, ``pidfd_getfd``, new namespaces
(``unshare``, ``setns``), mounts (old and new API), ``chroot``, ``perf_event_open``, ``bpf``,
``userfaultfd``, keyrings, kernel modules and ``kexec``, ``open_by_handle_at``, ``io_uring``,
``socket`` (any family: no TCP, UDP or unix socket at all), extended attributes, and signals to any process but
itself (``kill`` only to 0, its own pid or its own process group; ``tgkill`` and
``rt_(tg)sigqueueinfo`` only to itself; no ``tkill`` or ``pidfd_send_signal``). Any other
architecture's system calls (i386 through ``int 0x80``, x32) are refused too. ``chmod``,
``chown`` and ``utime`` (every variant) return success and change nothing: Landlock does not
guard a file's mode, owner or times (a read-only descriptor of a course_lib file is enough for
``fchmod``; a path is enough for ``utimes``), and honest code's ``shutil.copy2`` or
``Path.touch`` in the sandbox, which set a mode or a time, keeps working. It overlaps with
Landlock on purpose: on a kernel with Landlock ABI < 4 or < 6, it alone closes TCP and signals.

What neither layer bounds is CPU, memory and file size: the worker's resource limits and the
grader's timeout (which kills the whole process group) do.

Taught in: not taught; used by ``course-grade`` (:mod:`course_lib.grading.worker`).
Source: Linux kernel documentation, ``Documentation/userspace-api/landlock.rst`` (ABI versions
1-7, "Backward and forward compatibility") and ``Documentation/userspace-api/seccomp_filter.rst``.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import platform
import site
import stat
import struct
import sys
import sysconfig

__all__ = ["ABI_ENV", "ISOLATION_CHOICES", "ConfinementUnavailable", "available", "confine", "confine_worker",
           "cuda_paths", "default_read_paths", "resolve_isolation"]

ISOLATION_CHOICES = ("auto", "landlock", "none")
ABI_ENV = "COURSE_LANDLOCK_ABI"  # an integer overrides the detected ABI (0: act as if Landlock were absent)

_NR_CREATE_RULESET, _NR_ADD_RULE, _NR_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# Landlock filesystem rights (include/uapi/linux/landlock.h)
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_UNAVAILABLE_HELP = (
    "the grader confines each submission with Landlock, which this system does not offer "
    "({why}); Landlock needs Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK and 'landlock' in the "
    "lsm= boot list. Grade inside the course's container on such a kernel, or pass "
    "--isolation none if you trust every submission (native code can then read solutions/ "
    "and other students' notebooks)."
)


class ConfinementUnavailable(RuntimeError):
    """The requested isolation is not offered by this kernel (see the message for what to do)."""


def _syscall(*args) -> int:
    """libc's syscall(2); looked up on first use, so that importing this module works everywhere."""
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    return fn(*args)


def _prctl(option: int, arg2: int, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    fn = ctypes.CDLL(None, use_errno=True).prctl
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return fn(option, arg2, arg3, arg4, arg5)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _kernel_abi() -> int:
    if sys.platform != "linux":
        return 0
    abi = _syscall(ctypes.c_long(_NR_CREATE_RULESET), None, ctypes.c_size_t(0),
                   ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(abi), 0)  # -1 with ENOSYS (no Landlock) or EOPNOTSUPP (disabled at boot)


def available() -> int:
    """The Landlock ABI version this kernel offers; 0 when Landlock is absent.

    Returns:
        int: 0 (absent: not Linux, kernel < 5.13, or disabled), else 1..7 (or more on newer kernels).
        The environment variable ``COURSE_LANDLOCK_ABI`` lowers it (``0`` simulates an absent
        Landlock, for tests); it never raises it above what the kernel offers.
    """
    abi = _kernel_abi()
    forced = os.environ.get(ABI_ENV, "").strip()
    if forced:
        abi = min(abi, max(int(forced), 0))
    return abi


def resolve_isolation(choice: str) -> str:
    """The isolation to use for ``choice`` ("auto", "landlock" or "none"): "landlock" or "none".

    "auto" and "landlock" use the strongest confinement the kernel offers (Landlock with the
    ABI it has, plus the seccomp filter); "none" confines nothing (only the audit hook and the
    resource limits remain).

    Raises:
        ValueError: ``choice`` is not one of :data:`ISOLATION_CHOICES`.
        ConfinementUnavailable: "auto" or "landlock" on a system without Landlock; the message
            says what to do (the container, or ``--isolation none`` knowingly).
    """
    if choice not in ISOLATION_CHOICES:
        raise ValueError(f"isolation must be one of {ISOLATION_CHOICES}, got {choice!r}")
    if choice == "none":
        return "none"
    if available() < 1:
        why = f"{platform.system()} {platform.release()}"
        if os.environ.get(ABI_ENV, "").strip():
            why += f", {ABI_ENV}={os.environ[ABI_ENV]}"
        raise ConfinementUnavailable(f"isolation {choice!r}: " + _UNAVAILABLE_HELP.format(why=why))
    return "landlock"


def default_read_paths() -> list[str]:
    """The folders and files a confined Python process needs to read (to import and to plot).

    Python's installation (``sys.prefix``, ``sys.base_prefix``, the stdlib, site-packages, every
    ``sys.path`` entry that is a folder of installed code), the folder of ``course_lib`` itself
    (never its parent: that is the repository, with ``solutions/``), the system's libraries and
    shared data (``/usr/lib``, ``/lib``, ``/usr/share``), what the dynamic loader and the C
    library read in ``/etc``, this process's own ``/proc`` entries, ``/sys/devices/system/cpu``
    and ``/dev/urandom``.

    Returns:
        list[str]: absolute paths; some may not exist on this system (:func:`confine` skips those).
    """
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib"))
    paths.update(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        paths.add(site.getusersitepackages())
    paths.update(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p or p.endswith(".zip")))
    package = sys.modules[__name__.split(".")[0]]  # course_lib, wherever this module lies inside it
    paths.add(os.path.dirname(os.path.abspath(package.__file__)))  # course_lib/ only: its parent holds solutions/
    paths.update(["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share", "/usr/local/share",
                  "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/locale.alias",
                  "/etc/nsswitch.conf", "/etc/passwd", "/etc/group", "/etc/fonts", "/etc/matplotlibrc",
                  "/proc/self", "/proc/cpuinfo", "/sys/devices/system/cpu", "/dev/urandom", "/dev/zero"])
    return sorted(paths)


def cuda_paths() -> tuple[list[str], list[str]]:
    """What NVIDIA's CUDA driver opens while it starts in a process: (device files, read paths).

    A worker that grades on a GPU confines itself *before* its first CUDA call, so that the threads the
    driver starts then are born confined (Landlock and seccomp bind the calling thread and the threads it
    starts afterwards, never the threads that exist already). The driver then needs:

    - device files, opened for reading and writing and driven with ``ioctl``: ``/dev/nvidiactl``,
      ``/dev/nvidia<N>``, ``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools``, ``/dev/nvidia-modeset`` and
      ``/dev/nvidia-caps/*``, those present on this machine;
    - read paths: the folder of the driver's libraries (``libcuda.so.1``, ``libnvidia-ml.so.1``, which
      this function loads, without any CUDA call, to find where the dynamic loader takes them from: often
      outside the system's library folders, as ``/usr/local/nvidia/lib64`` in containers), the driver's
      parameters (``/proc/driver/nvidia``, ``/proc/devices``, ``/proc/sys/vm/mmap_min_addr``) and the
      PCI devices' entries in sysfs (``/sys/bus/pci``, ``/sys/devices``), where it finds each GPU.

    The list comes from ``strace`` of a CUDA start on an H200 (driver 580, CUDA 13.0); the test that starts
    CUDA inside the confinement (tests/test_confine.py) runs wherever CUDA is available.

    Returns:
        tuple[list[str], list[str]]: absolute paths; two empty lists on a machine without NVIDIA's driver.
    """
    devices = []
    for path in sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*")):
        try:
            if stat.S_ISCHR(os.stat(path).st_mode):
                devices.append(path)
        except OSError:
            continue
    if not devices:
        return [], []
    for name in ("libcuda.so.1", "libnvidia-ml.so.1"):
        try:
            ctypes.CDLL(name)  # maps the library (and keeps it loaded); no CUDA call is made
        except OSError:
            continue
    reads = _loaded_library_folders(("libcuda.so", "libnvidia-")) + [p for p in CUDA_READ_PATHS if os.path.exists(p)]
    return devices, reads


def _loaded_library_folders(prefixes: tuple[str, ...]) -> list[str]:
    """The folders of the shared libraries mapped in this process whose file name starts with one of
    ``prefixes`` (from ``/proc/self/maps``; sorted, each once)."""
    folders = set()
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
            path = fields[5].strip() if len(fields) == 6 else ""
            if path.startswith("/") and os.path.basename(path).startswith(prefixes):
                folders.add(os.path.dirname(path))
    return sorted(folders)


#: What the CUDA driver reads while it starts, besides its libraries' folder (see :func:`cuda_paths`).
CUDA_READ_PATHS = ("/proc/driver/nvidia", "/proc/devices", "/proc/sys/vm/mmap_min_addr", "/sys/bus/pci",
                   "/sys/devices")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_read_paths(read_paths, denied) -> list[str]:
    out = []
    denied_real = [os.path.realpath(d) for d in denied]
    for p in read_paths:
        real = os.path.realpath(p)
        for d in denied_real:
            if _inside(d, real) or _inside(real, d):
                raise ValueError(f"read_paths: {p!r} overlaps the denied path {d!r}; confinement would let it be read")
        out.append(real)
    return out


def _restrict_landlock(sandbox: str, read_paths: list[str], abi: int, devices: list[str] = ()) -> None:
    fs = _FS_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fs |= _FS_IOCTL_DEV if abi >= 5 else 0
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    fields = [fs] + ([net] if abi >= 4 else []) + ([scoped] if abi >= 6 else [])
    attr = ctypes.create_string_buffer(struct.pack(f"<{len(fields)}Q", *fields), 8 * len(fields))
    ruleset = _syscall(ctypes.c_long(_NR_CREATE_RULESET), attr, ctypes.c_size_t(8 * len(fields)), ctypes.c_uint32(0))
    if ruleset < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset (ABI {abi}): {os.strerror(err)}")
    try:
        file_rw = (_FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE) & fs
        rules = [(sandbox, fs), ("/dev/null", file_rw)] + [(p, _FS_READ_FILE | _FS_READ_DIR) for p in read_paths]
        rules += [(d, (_FS_READ_FILE | _FS_WRITE_FILE | _FS_IOCTL_DEV) & fs) for d in devices]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent on this system: nothing to grant
            try:
                if not os.path.isdir(f"/proc/self/fd/{fd}"):
                    access &= _FS_FILE_ONLY  # a rule on a file may only hold file rights
                rule = _PathBeneath(access, fd)
                if _syscall(ctypes.c_long(_NR_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                            ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"landlock_add_rule {path!r}: {os.strerror(err)}")
            finally:
                os.close(fd)
        if _syscall(ctypes.c_long(_NR_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset)


# ---- seccomp: a classic BPF program over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]} ----

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_SYSCALLS = {  # name: (x86_64, aarch64); None where the architecture has no such call
    "fork": (57, None), "vfork": (58, None), "execve": (59, 221), "execveat": (322, 281),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "pidfd_getfd": (438, 438),
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41),
    "chroot": (161, 51), "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "perf_event_open": (298, 241), "bpf": (321, 280), "userfaultfd": (323, 282), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "open_by_handle_at": (304, 265), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "socket": (41, 198), "tkill": (200, 130), "pidfd_send_signal": (424, 424),
    "setxattr": (188, 5), "lsetxattr": (189, 6), "fsetxattr": (190, 7), "removexattr": (197, 14),
    "lremovexattr": (198, 15), "fremovexattr": (199, 16),
}
_NO_OPS = {  # succeed without doing anything: Landlock (ABI <= 7) does not guard modes, owners and times
    "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452),
    "chown": (92, None), "fchown": (93, 55), "lchown": (94, None), "fchownat": (260, 54),
    "utime": (132, None), "utimes": (235, None), "futimesat": (261, None), "utimensat": (280, 88),
}
_CLONE, _CLONE3 = (56, 220), (435, 435)
_KILL, _TGKILL, _SIGQUEUE, _TGSIGQUEUE = (62, 129), (234, 131), (129, 138), (297, 240)
_CLONE_THREAD = 0x00010000
_CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_ABS, _JEQ, _JGE, _AND, _RET = 0x20, 0x15, 0x35, 0x54, 0x06
_ARG0 = 16  # offset of args[0]'s low 32 bits (little-endian)


def _seccomp_program(machine: str, pid: int) -> list[tuple[int, int, int, int]]:
    col = 0 if machine == "x86_64" else 1
    deny, enosys, allow = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS, _RET_ALLOW
    prog = [(_LD_ABS, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH[machine]), (_RET, 0, 0, deny), (_LD_ABS, 0, 0, 0)]
    if machine == "x86_64":
        prog += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, deny)]  # x32 system calls

    def only_self(values: list[int]) -> list[tuple[int, int, int, int]]:
        """args[0] (low 32 bits) must be one of ``values``."""
        block = [(_LD_ABS, 0, 0, _ARG0)]
        for i, v in enumerate(values):
            block.append((_JEQ, len(values) - i, 0, v & 0xFFFFFFFF))
        return block + [(_RET, 0, 0, deny), (_RET, 0, 0, allow)]

    blocks = [(_CLONE[col], [(_LD_ABS, 0, 0, _ARG0), (_AND, 0, 0, _CLONE_THREAD | _CLONE_NAMESPACES),
                             (_JEQ, 0, 1, _CLONE_THREAD), (_RET, 0, 0, allow), (_RET, 0, 0, deny)]),
              (_CLONE3[col], [(_RET, 0, 0, enosys)]),
              (_KILL[col], only_self([0, pid, -pid])),
              (_TGKILL[col], only_self([pid])),
              (_SIGQUEUE[col], only_self([pid])),
              (_TGSIGQUEUE[col], only_self([pid]))]
    blocks += [(nrs[col], [(_RET, 0, 0, deny)]) for nrs in _SYSCALLS.values() if nrs[col] is not None]
    blocks += [(nrs[col], [(_RET, 0, 0, _RET_ERRNO | 0)]) for nrs in _NO_OPS.values() if nrs[col] is not None]
    for nr, block in blocks:
        prog.append((_JEQ, 0, len(block), nr))
        prog += block
    prog.append((_RET, 0, 0, allow))
    return prog


def _seccomp_machine() -> str | None:
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return machine if sys.platform == "linux" and machine in _AUDIT_ARCH else None


def _install_seccomp(machine: str) -> None:
    prog = _seccomp_program(machine, os.getpid())
    raw = b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)
    filters = ctypes.create_string_buffer(raw, len(raw))

    class _Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _Fprog(len(prog), ctypes.addressof(filters))
    if _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {os.strerror(err)}")


def confine(sandbox_dir: str, read_paths: list[str] | None = None, *, abi: int | None = None,
            denied: list[str] = (), seccomp: bool = True, devices: list[str] = ()) -> dict:
    """Confine the current process (and all it could start) for good: Landlock, then seccomp.

    Call it after the trusted imports (torch, course_lib), while the process has a single
    thread (a fork server's child, or ``OMP_NUM_THREADS=1``), before any untrusted code. From
    then on the process may write only inside ``sandbox_dir`` (and ``/dev/null``), read only
    ``sandbox_dir`` and ``read_paths``, and cannot start processes, open sockets, signal or
    trace other processes (see the module doc for every layer).

    Args:
        sandbox_dir (str): the one folder the process may write in (created files, caches).
        read_paths (list[str] | None): folders and files it may read; None: :func:`default_read_paths`.
            Paths that do not exist are skipped.
        abi (int | None): the Landlock ABI to use; None: :func:`available`. A lower value than the
            kernel's uses only that ABI's rights (to test what each ABI adds); higher is capped.
        denied (list[str]): paths that must stay unreadable; a ``read_paths`` entry that contains
            one of them (or lies inside one) is an error rather than a silent leak.
        seccomp (bool): also install the seccomp filter (x86_64 and aarch64 Linux).
        devices (list[str]): device files the process may open for reading and writing and drive with
            ``ioctl`` (a GPU's: :func:`cuda_paths`); checked against ``denied`` like ``read_paths``.

    Returns:
        dict: what was applied: ``{"landlock_abi": int, "seccomp": bool}``.

    Raises:
        ConfinementUnavailable: Landlock is absent (or ``abi`` < 1).
        ValueError: a ``read_paths`` entry overlaps ``denied``, or ``sandbox_dir`` is not a folder.
        RuntimeError: the process has more than one thread (the others would stay unconfined).
        OSError: the kernel refused a step (the process may then be partly confined; end it).
    """
    kernel = available()
    abi = kernel if abi is None else min(int(abi), kernel)
    if abi < 1:
        raise ConfinementUnavailable(_UNAVAILABLE_HELP.format(why=f"Landlock ABI {abi}"))
    sandbox = os.path.realpath(sandbox_dir)
    if not os.path.isdir(sandbox):
        raise ValueError(f"sandbox_dir: {sandbox_dir!r} is not a folder")
    paths = _check_read_paths(default_read_paths() if read_paths is None else read_paths, denied)
    devices = _check_read_paths(devices, denied)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:  # landlock_restrict_self (ABI < 8) and a seccomp filter bind the calling thread only
        raise RuntimeError(f"confine: the process has {threads} threads; confine it before it starts any "
                           "(the others would stay unconfined)")
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    _restrict_landlock(sandbox, paths, abi, devices)
    machine = _seccomp_machine() if seccomp else None
    if machine is not None:
        _install_seccomp(machine)
    return {"landlock_abi": abi, "seccomp": machine is not None}


_WORKER_ENV = ("HOME", "TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TORCH_HOME")


def _load_font_list() -> None:
    """Load matplotlib's font list now, while the worker may still start processes.

    On its first use in a fresh MPLCONFIGDIR, matplotlib builds its font cache and runs
    ``fc-list`` in a subprocess: after confinement (and under the audit hook) that is refused, and
    an honest notebook that plots would be flagged. Loaded here, the list stays in memory for the
    submission's cells. A no-op where matplotlib is not installed or already loaded it.
    """
    import threading

    try:
        import matplotlib.font_manager  # noqa: F401  (builds or reads the cache, in the sandbox)
    except ImportError:
        return
    # Building the cache starts a threading.Timer (a "building the font cache" warning), cancelled
    # when done; wait for it to end, since confine() refuses a process with a second thread.
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and isinstance(thread, threading.Timer):
            thread.cancel()
            thread.join()


def confine_worker(sandbox_dir: str, isolation: str, denied: list[str] = (), device: str = "cpu") -> dict:
    """Point every cache and config folder into ``sandbox_dir``, then confine unless ``isolation`` is "none".

    Called by the grading worker after its trusted imports, before the submission's first cell.
    HOME, TMPDIR, MPLCONFIGDIR, XDG_CACHE_HOME, XDG_CONFIG_HOME, XDG_DATA_HOME and TORCH_HOME become
    ``sandbox_dir`` (a fork-server child inherits the server's, which are not writable once
    confined), so that honest code that plots or caches never meets a refusal.

    Args:
        sandbox_dir (str): the worker's temporary folder (its working directory).
        isolation (str): "landlock" (or "auto") to confine, "none" to only set the folders.
        denied (list[str]): the grader's own paths, which no read path may contain (see :func:`confine`).
        device (str): the device the submission's calls run on; on a CUDA device the GPU's device files
            and the driver's read paths (:func:`cuda_paths`) are granted too, and the first CUDA call must
            come after this one (the driver's threads are then born confined).

    Returns:
        dict: what :func:`confine` applied, or ``{"landlock_abi": 0, "seccomp": False}`` for "none".

    Raises:
        ValueError: ``isolation`` is not one of :data:`ISOLATION_CHOICES`.
        ConfinementUnavailable: Landlock was asked for and is absent.
    """
    if isolation not in ISOLATION_CHOICES:
        raise ValueError(f"isolation must be one of {ISOLATION_CHOICES}, got {isolation!r}")
    sandbox = os.path.realpath(sandbox_dir)
    for key in _WORKER_ENV:
        os.environ[key] = sandbox
    import tempfile

    tempfile.tempdir = None  # computed again from TMPDIR on next use
    _load_font_list()
    if isolation == "none":
        return {"landlock_abi": 0, "seccomp": False}
    devices, reads = cuda_paths() if device.startswith("cuda") else ([], [])
    return confine(sandbox, default_read_paths() + reads, denied=denied, devices=devices)
