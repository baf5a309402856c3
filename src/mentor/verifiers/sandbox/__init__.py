"""Process isolation for model-written code: which mechanism works here, launching, and cleaning up.

Three modes, best first; `available_modes()` probes each once per process (by really running a program
in it) and `resolve_mode("auto")` picks the best that works:

==========  ============================================================================================
``bwrap``   bubblewrap, started as the sandbox uid (setpriv): new user, pid, net, ipc, uts and cgroup
            namespaces; a root file system holding only /usr (and /bin, /lib*), the interpreter, /proc, a
            minimal /dev, a size-capped tmpfs /tmp and the work directory; no further user namespaces;
            ``--die-with-parent``; the runner is the namespace's pid 1 (``--as-pid-1``).
``unshare`` util-linux ``unshare`` as root (no bubblewrap): new mount, pid, net, ipc and uts namespaces; the
            runner builds the view itself (size-capped tmpfs over /tmp, /var/tmp, /dev/shm, /run/lock,
            /root, /home; the work directory bound back; every other mount read-only), then drops to the
            sandbox uid with no groups and ``no_new_privs``.
``rlimits`` no namespaces: rlimits, a new session, the sandbox uid when root. Guarantees only what the
            uid and rlimits give: **no network isolation**, the program can read world-readable files and
            write wherever the uid may (world-writable /tmp, /var/tmp, /dev/shm: what it leaves directly
            there is deleted after the run, as root). Not for untrusted code; the verifier logs a warning
            when it falls back to it.
==========  ============================================================================================

In every mode: one fresh work directory (mode 0700, owned by the sandbox uid) per candidate; the
environment is only PATH, LANG, HOME and TMPDIR; per-test limits on wall time, CPU seconds, address
space and output bytes (RLIMIT_FSIZE on the capture memfd, which also caps every file the program
writes); a cap on processes+threads (RLIMIT_NPROC, only when the sandbox has its own uid: otherwise it
would count all of the user's processes); a new session and process group.

Sandbox uids: when the verifier runs as root, each live sandbox gets its own uid from a range no account
uses (3,000,000 + slot, checked against the uid map and the password database), claimed with an `flock`
so that concurrent runs, threads or processes never share one. That makes cleanup exact: after a run the
parent asks the runner to exit (it kills the rest of its sandbox first), SIGKILLs whatever is left of the
slot's uid (which reaches daemons that left the session) and the process group, checks in /proc that no
live process of that uid remains, and only then frees the slot. With a pid namespace (bwrap, unshare) the
kernel already kills the whole namespace when its first process dies (the runner is that process: bwrap
runs with ``--as-pid-1``, so no namespace init is ever orphaned); the uid sweep is the check. Without root
there is no uid to sweep: bwrap's pid namespace still catches daemons, plain rlimits cannot.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import marshal
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODES = ("bwrap", "unshare", "rlimits")
UID_BASE = 3_000_000
UID_SLOTS = 1024
_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run (per test unless said otherwise)."""

    timeout: float = 2.0  # wall seconds per test; the CPU-time limit is the same, rounded up
    memory_mb: int = 256  # address space per process (RLIMIT_AS)
    output_limit: int = 1 << 20  # bytes of stdout kept per test; also the largest file the program may write
    max_processes: int = 32  # processes + threads of the sandbox uid (RLIMIT_NPROC)
    max_files: int = 64  # open file descriptors per process
    tmpfs_mb: int = 64  # size of the private /tmp (bwrap, unshare)
    max_input_bytes: int = 64 << 20  # largest stdin of one test
    fail_fast: bool = True  # after one test times out, the remaining tests fail without running
    startup_timeout: float = 10.0  # wall seconds to start the sandbox and run the program's top level
    harness_memory_mb: int = 1024  # address space of the trusted assert harness

    def __post_init__(self):
        for name in ("timeout", "startup_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("memory_mb", "output_limit", "max_processes", "max_files", "tmpfs_mb", "max_input_bytes",
                     "harness_memory_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.max_files < 16:
            raise ValueError(f"Limits.max_files must be >= 16 (the runner needs a few), got {self.max_files}")


class SandboxError(RuntimeError):
    """The sandbox could not be started or cleaned up (an infrastructure failure, never a verdict)."""


class ChannelTimeout(Exception):
    pass


class ChannelClosed(Exception):
    pass


# ----------------------------------------------------------------------------- sources run elsewhere

@functools.lru_cache(maxsize=None)
def _source(name: str) -> str:
    """values.py + `name`.py, the whole program a `-c` interpreter runs (both are stdlib-only)."""
    return (_HERE / "values.py").read_text() + "\n\n" + (_HERE / f"{name}.py").read_text()


# The runner and the harness start as ``python -I -S -c BOOT``: BOOT reads one frame from stdin with plain
# os.read calls (a buffered read could swallow the next frame) and executes it as code. The frame is the
# program compiled once per interpreter (`_bytecode`), which saves compiling ~30 kB of source (~8 ms of
# CPU) in every sandbox.
BOOT = ("import os, marshal\n"
        "def _read(n):\n"
        "    data = b''\n"
        "    while len(data) < n:\n"
        "        chunk = os.read(0, n - len(data))\n"
        "        if not chunk:\n"
        "            raise SystemExit(3)\n"
        "        data += chunk\n"
        "    return data\n"
        "exec(marshal.loads(_read(int.from_bytes(_read(4), 'big'))))\n")


@functools.lru_cache(maxsize=None)
def _bytecode(name: str, python: str) -> bytes:
    """`_source(name)` compiled by `python` itself (bytecode is version-specific), marshalled."""
    compiler = ("import marshal, sys\n"
                f"code = compile(sys.stdin.read(), '<mentor-{name}>', 'exec')\n"
                "sys.stdout.buffer.write(marshal.dumps(code))")
    out = subprocess.run([python, "-I", "-S", "-c", compiler], input=_source(name).encode(), capture_output=True,
                         timeout=60, check=True)
    return out.stdout


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# ----------------------------------------------------------------------------- uid slots

def _uid_base() -> int | None:
    """First uid of a block of UID_SLOTS that the uid map covers and no account uses; None if not root."""
    if os.geteuid() != 0:
        return None
    ranges = []
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _, count = (int(x) for x in line.split())
                ranges.append((inside, inside + count))
    except OSError:
        ranges = [(0, 1 << 32)]
    for base in (UID_BASE, 200_000, 60_000):
        if any(lo <= base and base + UID_SLOTS <= hi for lo, hi in ranges):
            return base
    return None


class UidSlot:
    """An exclusive sandbox uid (root only), claimed with a non-blocking flock on a per-uid lock file.

    Slots rotate (round robin from the last one handed out) and a uid that still owns any process, zombies
    included, is skipped: orphans of a run without a pid namespace (rlimits mode) are reaped by the host's
    init, maybe late, and until then they count against the next run's RLIMIT_NPROC."""

    _lock = threading.Lock()
    _next = 0

    def __init__(self):
        self.uid: int | None = None
        self._fd: int | None = None
        base = _uid_base()
        if base is None:
            return
        lock_dir = _state_dir() / "uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        busy = uids_with_processes(base, base + UID_SLOTS)
        with UidSlot._lock:
            for k in range(UID_SLOTS):
                uid = base + (UidSlot._next + k) % UID_SLOTS
                if uid in busy or _uid_is_account(uid):
                    continue
                fd = os.open(lock_dir / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self.uid, self._fd = uid, fd
                UidSlot._next = (uid - base + 1) % UID_SLOTS
                return
        raise SandboxError(f"all {UID_SLOTS} sandbox uids from {base} are in use")

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


@functools.lru_cache(maxsize=None)
def _uid_is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


@functools.lru_cache(maxsize=None)
def _state_dir() -> Path:
    """A directory only we can write and others can only traverse (work directories live inside)."""
    path = Path(tempfile.gettempdir()) / f"mentor-sandbox-{os.geteuid()}"
    path.mkdir(mode=0o711, exist_ok=True)
    st = path.lstat()
    if st.st_uid != os.geteuid() or not path.is_dir() or path.is_symlink():
        raise SandboxError(f"{path} exists and is not a directory owned by uid {os.geteuid()}")
    os.chmod(path, 0o711)
    return path


def uids_with_processes(low: int, high: int) -> set[int]:
    """Uids in [low, high) that own a process, zombies included (real, effective or saved uid)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read(2048)
        except OSError:
            continue
        start = status.find(b"\nUid:")
        if start >= 0:
            found.update(u for u in map(int, status[start + 5:status.find(b"\n", start + 1)].split()[:3])
                         if low <= u < high)
    return found


def pids_of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes whose real, effective or saved uid is `uid`, from /proc/PID/status."""
    found, key = [], str(uid).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read(2048)
        except OSError:
            continue  # the process ended while we looked
        state = uids = b""
        for line in status.split(b"\n"):
            if line.startswith(b"State:"):
                state = line[6:].strip()[:1]
            elif line.startswith(b"Uid:"):
                uids = line
                break
        if key in uids.split()[1:4] and state not in (b"Z", b"X"):  # a zombie runs nothing; its parent reaps it
            found.append(int(name))
    return found


def kill_uid(uid: int, timeout: float = 5.0, spare: int | None = None) -> None:
    """SIGKILL every live process of `uid` (but `spare`) until none is left; SandboxError if some survive."""
    deadline = time.monotonic() + timeout
    while pids := [p for p in pids_of_uid(uid) if p != spare]:
        if time.monotonic() > deadline:
            raise SandboxError(f"processes {pids[:10]} of sandbox uid {uid} survived SIGKILL for {timeout}s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def remove_files_of_uid(uid: int, dirs: tuple[str, ...] = SHARED_WRITABLE) -> list[str]:
    """Delete what `uid` left directly in the world-writable directories (rlimits mode has no private /tmp;
    the uid is about to be reused). Returns the removed paths."""
    removed = []
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(entry.path)
            except OSError:
                continue
    return removed


# ----------------------------------------------------------------------------- line channel

class LineReader:
    """Newline-delimited messages from a pipe, with a deadline and a size cap per message."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()
        os.set_blocking(fd, False)

    def read(self, deadline: float, limit: int) -> bytes:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 1]
                return line
            if len(self.buf) > limit:
                raise ChannelClosed(f"message longer than {limit} bytes")
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise ChannelTimeout()
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise ChannelClosed("end of stream")
            self.buf += chunk


def write_all(fd: int, data: bytes, deadline: float) -> None:
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise ChannelTimeout()
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise ChannelClosed("peer closed its input") from None


# ----------------------------------------------------------------------------- the sandbox

def _minimal_env(workdir: str, tmpdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": tmpdir}


def _interpreters(python: str | None) -> list[str]:
    if python is not None:
        return [python]
    seen = []
    for p in (getattr(sys, "_base_executable", None), sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if p and os.path.exists(p):
            real = os.path.realpath(p)
            if real not in seen:
                seen.append(real)
    return seen


def _bwrap_command(python: str, workdir: str, limits: Limits) -> list[str]:
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
           "--as-pid-1", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    prefix = os.path.dirname(os.path.dirname(python))  # .../bin/python3 -> ...
    if not prefix.startswith("/usr"):
        cmd += ["--ro-bind", prefix, prefix]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        cmd += ["--ro-bind-try", f, f]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    if _bwrap_has_size():
        cmd += ["--size", str(limits.tmpfs_mb << 20)]
    cmd += ["--tmpfs", "/tmp", "--bind", workdir, workdir, "--chdir", workdir, "--"]
    return cmd


@functools.lru_cache(maxsize=None)
def _bwrap_has_size() -> bool:
    try:
        out = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout + out.stderr


class Sandbox:
    """One isolated runner for one candidate program, serving many tests. Use as a context manager.

    kind: "run" (stdin/stdout tests) or "call" (function calls on `entry_point`)."""

    def __init__(self, program: str, kind: str, *, entry_point: str | None = None, limits: Limits = Limits(),
                 isolation: str = "auto", python: str | None = None, _probe: bool = False):
        if kind not in ("run", "call"):
            raise ValueError(f"Sandbox kind must be 'run' or 'call', got {kind!r}")
        if kind == "call" and not entry_point:
            raise ValueError("Sandbox kind 'call' needs an entry_point")
        self.program, self.kind, self.entry_point, self.limits = program, kind, entry_point, limits
        # a probe runs a named mode with a named interpreter as they are, without resolving (which probes)
        self.mode, self.python = (isolation, python) if _probe else resolve_mode(isolation, python)
        self.proc: subprocess.Popen | None = None
        self.slot: UidSlot | None = None
        self.workdir: str | None = None
        self.hello: dict = {}
        self._next_id = 0

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> dict:
        """Launch the runner and send the program; returns its first reply (ready / syntax_error / load_error)."""
        lim = self.limits
        self.slot = UidSlot()
        uid = self.slot.uid
        self.workdir = tempfile.mkdtemp(prefix="run-", dir=_state_dir())
        if uid is not None:
            os.chown(self.workdir, uid, uid)
        os.chmod(self.workdir, 0o700)
        cfg = {"setup": self.mode, "workdir": self.workdir, "uid": uid, "gid": uid, "kind": self.kind,
               "entry_point": self.entry_point, "kill_all": uid is not None or self.mode != "rlimits",
               "max_processes": lim.max_processes if uid is not None else 0, **asdict(lim)}
        runner = [self.python, "-I", "-S", "-c", BOOT]
        tmpdir = self.workdir if self.mode == "rlimits" else "/tmp"
        popen = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                     start_new_session=True, env=_minimal_env(self.workdir, tmpdir), cwd=self.workdir)
        if self.mode == "bwrap":
            cmd = _bwrap_command(self.python, self.workdir, lim) + runner
            if uid is not None:  # bwrap itself must run as the sandbox uid: its user namespace maps that uid
                cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"] + cmd
        elif self.mode == "unshare":
            cmd = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                   "--mount-proc", "--"] + runner
        else:
            cmd = runner
        # No `user=` for Popen: it would stop subprocess from using vfork. setpriv (bwrap) or the runner
        # itself (unshare, rlimits) drops to the sandbox uid.
        self.proc = subprocess.Popen(cmd, **popen)
        self.reader = LineReader(self.proc.stdout.fileno())
        deadline = time.monotonic() + lim.startup_timeout
        try:
            code = _bytecode("runner", self.python)
            job = marshal.dumps({"cfg": cfg, "program": self.program}, 4)
            write_all(self.proc.stdin.fileno(), _frame(code) + _frame(job), deadline)
            self.hello = _checked_hello(self.reader.read(deadline, 1 << 16))
            if self.hello["status"] == "loading":  # "call": the candidate's top level runs now
                self.hello = {"status": "load_error", "memory": False, "error": "the program ended while loading"}
                self.hello = _checked_hello(self.reader.read(deadline, 1 << 16))
        except ChannelTimeout:
            self.hello = {"status": "start_timeout"}
        except ChannelClosed as e:
            if self.hello.get("status") != "load_error":
                self.hello = {"status": "start_failed", "error": str(e)}
        return self.hello

    def _send(self, obj: dict, deadline: float) -> None:
        """One request frame: 4-byte length + marshal (the runner is ours; marshal needs no import there)."""
        write_all(self.proc.stdin.fileno(), _frame(marshal.dumps(obj, 4)), deadline)

    def request(self, op: str, **fields) -> dict:
        """One test: op "run" (fields: stdin) or "call" (fields: args, kwargs as literal text).
        Raises ChannelTimeout / ChannelClosed if the runner stops answering."""
        self._next_id += 1
        deadline = time.monotonic() + self.limits.timeout + 2.0  # the runner enforces timeout; 2 s of slack
        self._send({"op": op, "id": self._next_id, **fields}, deadline)
        line = self.reader.read(deadline, self.limits.output_limit * 6 + (1 << 16))
        return _checked_reply(line, op, self._next_id)

    def close(self) -> None:
        """Stop the run, check that no process of its uid survives, delete the work directory.

        The runner is first asked to exit (it kills the rest of its sandbox and leaves, so that bwrap and
        unshare reap their namespace's init and no orphan is left for the host's init to reap); if it does
        not within half a second, every process of the slot's uid but the launcher (or, without a uid, the
        process group) is killed, then the launcher."""
        try:
            proc = self.proc
            if proc is not None:
                if proc.poll() is None:
                    try:
                        self._send({"op": "exit"}, time.monotonic() + 0.1)
                    except (ChannelTimeout, ChannelClosed, OSError):
                        pass
                    try:
                        proc.wait(0.5)
                    except subprocess.TimeoutExpired:
                        uid = self.slot.uid if self.slot is not None else None
                        if uid is not None:
                            kill_uid(uid, spare=proc.pid)
                        try:
                            proc.wait(0.5)
                        except subprocess.TimeoutExpired:
                            pass
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
                for stream in (proc.stdin, proc.stdout):
                    try:
                        stream.close()
                    except OSError:
                        pass
            if self.slot is not None and self.slot.uid is not None:
                try:
                    kill_uid(self.slot.uid)
                except SandboxError:
                    log.error("sandbox uid %s keeps live processes; it stays claimed until this process ends",
                              self.slot.uid)
                    self.slot = None  # never released: its flock lives on in the leaked descriptor
                    raise
                if self.mode == "rlimits":
                    remove_files_of_uid(self.slot.uid)
        finally:
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            if self.slot is not None:
                self.slot.release()
                self.slot = None
            self.proc = None


_REPLY_TYPES = {  # field -> allowed types, per request kind; anything else is a malformed reply
    "run": {"timed_out": (bool,), "exit": (int, type(None)), "signal": (int, type(None)), "stdout": (str,),
            "output_capped": (bool,), "stderr": (str,), "time": (int, float)},
    "call": {"timed_out": (bool,), "exit": (int, type(None)), "signal": (int, type(None)), "status": (str,),
             "time": (int, float)},
}


def _checked_reply(line: bytes, op: str, want_id: int) -> dict:
    """Parse and type-check one runner reply. In "call" mode the candidate's code shares the runner's
    process, so a reply may be forged or garbage: it must still never crash the parent (it can only
    ever carry values the candidate could have returned anyway)."""
    try:
        reply = json.loads(line)
    except ValueError:
        raise ChannelClosed("malformed reply from the sandbox") from None
    if not isinstance(reply, dict) or reply.get("id") != want_id:
        raise ChannelClosed(f"reply out of order (wanted test {want_id})")
    for key, types in _REPLY_TYPES[op].items():
        if type(reply.get(key)) not in types:
            raise ChannelClosed(f"malformed reply from the sandbox: field {key!r}")
    if op == "call" and reply["status"] == "ok" and not isinstance(reply.get("value"), str):
        raise ChannelClosed("malformed reply from the sandbox: field 'value'")
    return reply


def _checked_hello(line: bytes) -> dict:
    try:
        hello = json.loads(line)
    except ValueError:
        raise ChannelClosed("malformed first message from the sandbox") from None
    if not isinstance(hello, dict) or not isinstance(hello.get("status"), str):
        raise ChannelClosed("malformed first message from the sandbox")
    return hello


class Harness:
    """The trusted assert harness process (see harness.py): runs the test program, outside the sandbox."""

    def __init__(self, program: str, entry_point: str | None, python: str, limits: Limits):
        self.limits = limits
        popen = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                     start_new_session=True, env=_minimal_env("/", "/tmp"), cwd="/")
        self.proc = subprocess.Popen([python, "-I", "-S", "-c", BOOT], **popen)
        self.reader = LineReader(self.proc.stdout.fileno())
        uid = _nobody() if os.geteuid() == 0 else None  # the tests are data: no root for them
        deadline = time.monotonic() + limits.startup_timeout
        write_all(self.proc.stdin.fileno(), _frame(_bytecode("harness", python)), deadline)
        self.send({"program": program, "entry_point": entry_point, "memory_mb": limits.harness_memory_mb,
                   "uid": uid}, deadline)

    def send(self, obj: dict, deadline: float) -> None:
        write_all(self.proc.stdin.fileno(), _frame(marshal.dumps(obj, 4)), deadline)

    def read(self, deadline: float) -> dict:
        return json.loads(self.reader.read(deadline, 1 << 22))

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@functools.lru_cache(maxsize=None)
def _nobody() -> int | None:
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None


# ----------------------------------------------------------------------------- probing

_PROBE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _probe(mode: str, python: str) -> bool:
    """Really run `print(6 * 7)` in `mode` with `python`; True when it printed 42 under the expected uid."""
    if mode == "bwrap" and shutil.which("bwrap") is None:
        return False
    if mode == "unshare" and (os.geteuid() != 0 or shutil.which("unshare") is None):
        return False
    if mode == "bwrap" and os.geteuid() == 0 and shutil.which("setpriv") is None:
        return False
    # importing modules nothing has loaded yet checks that the sandbox uid can read the standard library
    program = "import os, fractions, heapq\nprint(6 * 7, os.getuid())\n"
    try:
        with Sandbox(program, "run", limits=Limits(timeout=10.0), isolation=mode, python=python,
                     _probe=True) as sandbox:
            if sandbox.hello.get("status") != "ready":
                return False
            uid = sandbox.slot.uid
            reply = sandbox.request("run", stdin="")
    except (OSError, SandboxError, ChannelTimeout, ChannelClosed, ValueError, subprocess.SubprocessError) as e:
        log.debug("sandbox probe %s with %s failed: %s", mode, python, e)
        return False
    words = reply.get("stdout", "").split()
    return reply.get("exit") == 0 and words[:1] == ["42"] and (uid is None or words[1:] == [str(uid)])


def available_modes(python: str | None = None) -> dict[str, str]:
    """Every isolation mode that works on this machine, mapped to the interpreter it runs (probed once)."""
    found = {}
    with _PROBE_LOCK:
        for mode in MODES:
            for interp in _interpreters(python):
                if _probe(mode, interp):
                    found[mode] = interp
                    break
    return found


def resolve_mode(isolation: str = "auto", python: str | None = None) -> tuple[str, str]:
    """(mode, interpreter) for a requested isolation: "auto" = the best available, or a mode by name."""
    if isolation != "auto" and isolation not in MODES:
        raise ValueError(f"isolation must be 'auto' or one of {list(MODES)}, got {isolation!r}")
    modes = available_modes(python)
    if isolation == "auto":
        for mode in MODES:
            if mode in modes:
                if mode == "rlimits":
                    _warn_weak()
                return mode, modes[mode]
        raise SandboxError("no isolation mode works here: cannot run a Python interpreter "
                           f"(tried {_interpreters(python)}) even with rlimits alone")
    if isolation not in modes:
        raise SandboxError(f"isolation {isolation!r} does not work on this machine; available: {sorted(modes)}")
    return isolation, modes[isolation]


@functools.lru_cache(maxsize=None)
def _warn_weak() -> None:
    log.warning("code verifier: neither bubblewrap nor unshare works here; falling back to rlimits only "
                "(no network or file-system isolation). Install bubblewrap to run untrusted code.")
