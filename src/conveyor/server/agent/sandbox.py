"""The sandbox a worker process runs in (DESIGN A13): bubblewrap, one per process.

A tenant's handler sees, read-only, the Python runtime the agent runs on (its prefixes, the
conveyor package, ``/usr``) or, for a queue with an ``image``, that image's environment and the
interpreter it was made from (never the agent's site-packages), a few files of ``/etc`` that
names, TLS and its own user need, and its own stub's code folder at its real path. It may
write only a private ``/tmp`` (a tmpfs, gone with the process) and the folders the operator
binds (``--sandbox-bind``). It runs as ``nobody`` (65534) in its own user, PID, IPC and UTS
namespaces, sees a fresh ``/proc`` of its namespace only, a minimal ``/dev``, and nothing of
the agent's environment: the agent hands bubblewrap exactly the environment of
:func:`environment` (through ``execve``, not bwrap's ``--setenv``, so a queue's values never
show in the host's ``ps``). The network is shared: handlers call APIs.

Inside a bound folder, the paths in ``hidden`` (the store's folder, the token file, the code
cache of every stub, the images' environments) are covered by an empty tmpfs (or
``/dev/null`` for a file), so binding a folder that holds them does not show them; the stub's
own code and environment are bound again on top.

Killing the outer bwrap (the pid the agent holds) ends the namespace: bwrap's init dies with
it (``--die-with-parent``) and the kernel kills every process left in a PID namespace whose
init died, a handler's own subprocesses included.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import conveyor
from conveyor.server.agent.settings import AgentSettings

#: The sandbox's user and group: nobody.
NOBODY = "65534"
#: System folders bound read-only (a symlink, as ``/bin`` on merged-/usr systems, is recreated).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: What of ``/etc`` a process needs for host names, TLS and its own user; never the rest
#: (private keys, shadow, the host's configuration).
ETC = (
    "resolv.conf",
    "hosts",
    "host.conf",
    "gai.conf",
    "nsswitch.conf",
    "services",
    "protocols",
    "passwd",
    "group",
    "localtime",
    "ld.so.cache",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust",
    "mime.types",
)
#: The only writable place that every sandbox has; also its working folder and ``HOME``.
TMP = "/tmp"


def environment(queue_env: Mapping[str, str], bin_dir: Path | None = None) -> dict[str, str]:
    """A sandboxed process's whole environment: what Python and the runner need, then the
    queue's ``env``. Nothing of the agent's own (no ``CONVEYOR_STORE``, no token).
    ``bin_dir``: the ``bin`` of the image's environment (default: this Python's)."""
    env = {
        "PATH": f"{bin_dir or Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": TMP,
        "TMPDIR": TMP,
        "LANG": "C.UTF-8",
    }
    env.update(queue_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(path))


def runtime_paths() -> list[Path]:
    """What the runner needs of this Python: its prefixes (a venv and the interpreter it was
    made from), its site folders, and the conveyor package (an editable install lives
    elsewhere)."""
    paths = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    paths += site_packages()
    paths.append(os.path.dirname(conveyor.__file__))
    return [_real(p) for p in dict.fromkeys(paths) if p and os.path.isdir(p)]


def site_packages() -> list[str]:
    """The agent's own site folders: never shown to a queue that has an image."""
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]


def _under(path: Path, folders: Iterable[Path]) -> bool:
    return any(path == f or path.is_relative_to(f) for f in folders)


@dataclass(frozen=True, slots=True)
class Sandbox:
    #: Folders bound read-write at their own path into every sandbox (``--sandbox-bind``).
    binds: tuple[str, ...] = ()
    #: Folders and files never shown, even inside a bound folder.
    hidden: tuple[str, ...] = ()
    bwrap: str = "bwrap"

    def argv(
        self,
        command: Sequence[str],
        code_root: str | None,
        runtime: Sequence[Path] | None = None,
        writable: Sequence[Path] = (),
        chdir: str = TMP,
    ) -> list[str]:
        """``bwrap … -- command`` for one worker process of the stub whose code is in
        ``code_root`` (an absolute, resolved path). ``runtime``: the folders of an image's
        Python, bound read-only instead of the agent's own (whose site folders are then
        hidden); ``writable``: folders bound read-write (an image's environment while its
        ``commands`` run)."""
        args = [
            self.bwrap,
            "--unshare-user", "--uid", NOBODY, "--gid", NOBODY,
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "conveyor",
            "--disable-userns",  # no nested user namespace: no way back to capabilities
            "--die-with-parent",
            "--new-session",  # no terminal to push input into (TIOCSTI)
            "--proc", "/proc",
            "--dev", "/dev",
            "--tmpfs", TMP,
        ]  # fmt: skip
        for folder in SYSTEM:
            if os.path.islink(folder):
                args += ["--symlink", os.readlink(folder), folder]
            elif os.path.isdir(folder):
                args += ["--ro-bind", folder, folder]
        for name in ETC:
            etc = f"/etc/{name}"
            if os.path.exists(etc):
                args += ["--ro-bind", os.path.realpath(etc), etc]
        # Mounts by depth, parents first; at one path the last one wins (a mask, last).
        mounts: list[tuple[str, Path]] = []
        python = runtime_paths() if runtime is None else [_real(p) for p in runtime]
        system = [Path(f) for f in SYSTEM]
        for path in python:
            if not _under(path, system):
                mounts.append(("--ro-bind", path))
        code = _real(code_root) if code_root is not None else None
        if code is not None:
            mounts.append(("--ro-bind", code))
        own = [("--ro-bind", p) for p in python] + [("--bind", _real(w)) for w in writable]
        mounts += own[len(python):]
        if code is not None:
            own.append(("--ro-bind", code))
        # After the code: a folder the operator binds is writable even if it is the code's.
        mounts += [("--bind", _real(b)) for b in self.binds if os.path.isdir(b)]
        sources = [path for _, path in mounts] + system
        hide = [*self.hidden, str(Path.home() / ".conveyor")]
        if runtime is not None:
            hide += site_packages()
        for hidden in {_real(h) for h in hide} - {path for _, path in own}:
            if not _under(hidden, sources):
                continue  # not inside anything bound: not there to hide
            if hidden.is_dir():
                mounts.append(("--tmpfs", hidden))
            elif hidden.exists():
                mounts.append(("--ro-bind-null", hidden))
        # The stub's own code and environment inside a hidden folder (the code cache, the
        # environments) are bound again on top.
        masks = [path for kind, path in mounts if kind.startswith("--tmpfs")]
        for kind, path in own:
            if any(path != m and path.is_relative_to(m) for m in masks):
                mounts.append((kind, path))
        for kind, path in sorted(mounts, key=lambda m: len(m[1].parts)):
            if kind == "--tmpfs":
                args += ["--tmpfs", str(path)]
            elif kind == "--ro-bind-null":
                args += ["--ro-bind", "/dev/null", str(path)]
            else:
                args += [kind, str(path), str(path)]
        # The root bwrap builds its mount points in is a tmpfs: read-only, so /tmp (and the
        # sandbox's own /dev/shm) stay the only places a handler writes, beside the binds.
        return [*args, "--remount-ro", "/", "--chdir", chdir, "--", *command]


def through_pipe(argv: Sequence[str]) -> tuple[list[str], int]:
    """``argv`` with bwrap's options moved to a pipe (``--args FD``): the paths it binds and
    hides show neither in the host's ``ps`` nor in the sandbox's ``/proc/1/cmdline``. The
    caller passes the returned fd to the child (``pass_fds``) and closes it after the spawn."""
    split = list(argv).index("--")
    options = b"".join(os.fsencode(arg) + b"\0" for arg in argv[1:split])
    if len(options) >= 60_000:  # more than a pipe holds before a reader comes: keep argv
        raise ValueError("too many sandbox options for a pipe")
    read, write = os.pipe()
    try:
        os.write(write, options)
    finally:
        os.close(write)
    return [argv[0], "--args", str(read), *argv[split:]], read


def unavailable(bwrap: str = "bwrap") -> str | None:
    """Why this machine cannot sandbox worker processes, in words; None if it can."""
    return _probe(bwrap)


@functools.cache
def _probe(bwrap: str) -> str | None:
    if not sys.platform.startswith("linux"):
        return f"worker processes are sandboxed with bubblewrap, which needs Linux ({sys.platform})"
    found = shutil.which(bwrap)
    if found is None:
        return f"{bwrap} is not on PATH (install bubblewrap, e.g. apt-get install bubblewrap)"
    argv = Sandbox(bwrap=found).argv([sys.executable, "-c", "import conveyor"], None)
    try:
        done = subprocess.run(
            argv, env=environment({}), capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found} could not run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{found} failed: {said[-1] if said else f'exit code {done.returncode}'}"
    return None


def of_agent(settings: AgentSettings) -> Sandbox | None:
    """The sandbox of an agent's worker processes; None with ``sandbox=False``."""
    if not settings.sandbox:
        return None
    hidden = (
        *settings.sandbox_hidden, str(settings.code_cache), str(settings.envs),
        str(settings.uv_cache_dir()),
    )  # fmt: skip
    return Sandbox(binds=settings.sandbox_binds, hidden=hidden)
