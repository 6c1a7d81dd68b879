"""The worker's Python audit hook: refuse what a submission must not do, and record each attempt.

It sees what Python code does (open, os.*, subprocess, sockets, ctypes lookups): each refusal is
recorded, so the grader can name the attempt in the row ("sandbox-violation: ..."). Native code
that avoids these events is stopped by the kernel instead (:mod:`course_lib.grading.confine`).
"""

from __future__ import annotations

import os
import sys


def install_audit_hook(sandbox: str, denied: list[str], violations: list[str]) -> None:
    """Refuse what a submission must not do; record each refusal in ``violations``.

    Writes (open for writing, remove, rename, mkdir, chmod, ...) are allowed only inside
    ``sandbox``; reading or listing anything under ``denied`` is refused; process creation,
    network connections, signals to other processes, symlinks and raising resource limits are
    refused outright.
    """
    realpath, sep, getpid, fsdecode = os.path.realpath, os.sep, os.getpid, os.fsdecode
    sandbox = realpath(sandbox)
    denied_roots = tuple(realpath(d) for d in denied)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    writes = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
              "os.setxattr", "os.removexattr", "os.chflags", "os.lchflags", "os.lchmod", "shutil.rmtree",
              "os.mkfifo", "os.mknod"}
    pairs = {"os.rename", "os.link", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move"}
    listings = {"os.listdir", "os.scandir", "glob.glob", "os.chdir"}
    refused = {
        "subprocess.Popen": "starting a process", "os.system": "starting a process", "os.exec": "starting a process",
        "os.posix_spawn": "starting a process", "os.spawn": "starting a process", "os.fork": "starting a process",
        "os.forkpty": "starting a process", "pty.spawn": "starting a process", "os.startfile": "starting a process",
        "socket.connect": "a network connection", "socket.bind": "a network connection",
        "socket.sendto": "a network connection", "socket.sendmsg": "a network connection",
        "os.symlink": "creating a symlink", "resource.setrlimit": "changing the resource limits",
        "resource.prlimit": "changing the resource limits", "webbrowser.open": "opening a browser",
    }
    # Native code: the kernel (Landlock, seccomp: confine.py) stops what these libc functions would
    # do; looking one up through ctypes is also recorded here, so the row says what was attempted.
    native = {"open", "open64", "openat", "openat64", "creat", "creat64", "fopen", "fopen64", "write", "pwrite",
              "unlink", "unlinkat", "rename", "renameat", "mkdir", "rmdir", "chmod", "fchmod", "chown", "link",
              "symlink", "truncate", "socket", "connect", "bind", "kill", "tgkill", "ptrace", "fork", "vfork",
              "clone", "clone3", "syscall", "execve", "execv", "execvp", "system", "popen", "posix_spawn",
              "prctl", "setrlimit", "prlimit", "unshare", "setns", "mount", "dlopen", "process_vm_readv",
              "process_vm_writev"}
    state = {"busy": False}

    def resolve(path):
        if isinstance(path, int) or path is None:
            return None
        return realpath(fsdecode(path))

    def inside(path, root):
        return path == root or path.startswith(root + sep)

    def refuse(what):
        if len(violations) < 20:
            violations.append(what)
        raise PermissionError(f"grading sandbox: {what} is not allowed")

    def check_read(path, shown, verb="reading"):
        real = resolve(path)
        if real is not None and not inside(real, sandbox) and any(inside(real, root) for root in denied_roots):
            refuse(f"{verb} {shown}")
        return real

    def check_write(path, shown):
        real = check_read(path, shown, "writing")
        if real is not None and not (inside(real, sandbox) or real == "/dev/null"):
            refuse(f"writing {shown} (outside the sandbox)")

    def hook(event, args):
        if state["busy"]:
            return
        if event not in writes and event not in pairs and event not in listings and event not in refused \
                and event not in ("open", "os.kill", "os.killpg", "ctypes.dlsym"):
            return
        state["busy"] = True
        try:
            if event == "open":
                path, _mode, flags = args
                if isinstance(flags, int) and flags & write_flags:
                    check_write(path, str(path))
                else:
                    check_read(path, str(path))
            elif event in writes:
                check_write(args[0], str(args[0]))
            elif event in pairs:
                check_write(args[0], str(args[0]))
                check_write(args[1], str(args[1]))
            elif event in listings:
                check_read(args[0], str(args[0]))
            elif event in ("os.kill", "os.killpg"):
                if args[0] not in (getpid(), 0):
                    refuse("signalling another process")
            elif event == "ctypes.dlsym":
                name = args[1] if len(args) > 1 else None
                name = fsdecode(name) if isinstance(name, (bytes, str)) else None
                if name in native:
                    refuse(f"calling the C library's {name}() through ctypes")
            else:
                refuse(refused[event])
        finally:
            state["busy"] = False

    sys.addaudithook(hook)
