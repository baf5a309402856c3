"""The in-sandbox runner: a small zygote that runs one candidate program against many test cases.

Started by `mentor.verifiers.sandbox.Sandbox` inside the isolation layer as ``python -I -S -c <boot>``,
where the boot reads this file (with values.py) as a code object compiled once per interpreter; it runs
inside the isolation layer, so it can import nothing but the standard library. It talks to the trusted parent over
its original stdin/stdout, then points fds 0-2 at /dev/null. Requests come in as ``marshal`` frames (a
4-byte length, then the data: the parent is trusted, and marshal costs no import); replies go out as one
JSON object per line (``values.dumps_flat``), because the parent parses them as untrusted.

Per test it forks a child (about 1 ms, where a fresh sandbox costs 30-50 ms), sets the per-test limits
in it (CPU seconds, address space, file size, which caps captured output), and runs the candidate there:
    run   (stdin/stdout tests): the program is exec'd as ``__main__`` with the test input on fd 0 and
          fds 1/2 on size-capped memfds; the runner reports exit status and captured output.
    call  (function-call tests): the program was exec'd once in the zygote (``__name__ == "solution"``);
          the child calls the entry point on the decoded arguments and leaves ``repr`` of the result in a
          memfd; the runner reports it as literal text.
Between tests every other process of the sandbox is killed (``kill(-1)``, which spares the caller;
only where the sandbox owns its uid or pid namespace), so daemons and fork bombs do not carry over.

This process is *not* a trust boundary: in `call` mode the candidate's top-level code runs inside it.
It only reports facts (exit status, output text, literal return values); the verdict is computed by the
trusted parent from expected values that never enter the sandbox (see ``mentor/verifiers/code.py``).

In ``rlimits`` mode (as root) it starts as root and first drops to the sandbox uid, so that the parent
can start it with vfork (Python's subprocess cannot vfork when asked to change uid; forking a trainer
with torch loaded costs tens of milliseconds). In ``unshare`` mode the runner starts as root inside fresh
mount/pid/net/ipc/uts namespaces and first builds the file-system view itself: size-capped tmpfs over /tmp, /var/tmp, /dev/shm, /run/lock, /root
and /home; the work directory bound back read-write; every other mount remounted read-only; then it drops
to the sandbox uid/gid with no supplementary groups and sets ``no_new_privs``.
"""

import builtins
import ctypes
import io
import marshal
import os
import resource
import select
import sys
import time

SIGKILL = 9  # (importing `signal` would import `enum`: a few ms per sandbox)
EXIT_MEMORY = 86  # the child wrapper's exit code for MemoryError
_ERR_TAIL = 2000  # characters of stderr kept for diagnostics
def _limits_child(cfg, cpu_seconds):
    """Per-test limits, applied in the forked child before any candidate code runs."""
    soft = max(1, int(cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    mem = cfg["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["output_limit"], cfg["output_limit"]))


def _enter_unshare_sandbox(cfg):
    """As root in fresh namespaces: build the file-system view, then drop privileges for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
        1, 2, 4, 8, 32, 4096, 16384, 1 << 18)

    def mount(src, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")

    work = cfg["workdir"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    work_fd = os.open(work, os.O_PATH | os.O_DIRECTORY)
    fresh = []
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/root", "/home"):
        if os.path.isdir(d) and not os.path.islink(d):
            mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmpfs_mb']}m,mode=1777")
            fresh.append(d)
    os.makedirs(work, exist_ok=True)  # re-create the mount point if a fresh tmpfs now hides it
    mount(f"/proc/self/fd/{work_fd}", work, None, MS_BIND)
    os.close(work_fd)
    keep = set(fresh) | {work}
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    for fields in entries:
        point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        if point in keep or point.startswith(("/proc", "/sys")):
            continue
        opts = fields[5].split(",")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= (MS_NOSUID if "nosuid" in opts else 0) | (MS_NODEV if "nodev" in opts else 0)
        flags |= MS_NOEXEC if "noexec" in opts else 0
        try:
            mount(None, point, None, flags)
        except OSError:
            if os.path.exists(point):  # a mount hidden under a fresh tmpfs cannot be reached: fine
                raise
    _drop_privileges(cfg)


def _drop_privileges(cfg):
    """Become the sandbox uid/gid for good (no groups, no way back, no set-uid gains)."""
    uid, gid = cfg["uid"], cfg["gid"]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


class Runner:
    def __init__(self, cfg, reader, ctl_in, ctl_out):
        self.cfg = cfg
        self.reader = reader
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.timed_out = False
        self.code = None
        self.fn = None

    def send(self, obj):
        data = (dumps_flat(obj) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.ctl_out, view):]

    def cleanup_others(self, child_pid):
        """Kill whatever the test left behind: every other process of the sandbox, or the child's group."""
        if self.cfg["kill_all"]:
            try:
                os.kill(-1, SIGKILL)  # Linux spares the caller (and the namespace's init)
            except ProcessLookupError:
                pass
        else:
            try:
                os.killpg(child_pid, SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        while True:  # reap everything that was ours (we may be pid 1 and inherit orphans)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break

    def wait_child(self, pid, timeout):
        """Wait up to `timeout` wall seconds; returns (wait status or None on timeout, elapsed)."""
        start = time.monotonic()
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        elapsed = time.monotonic() - start
        if not ready:
            try:
                os.killpg(pid, SIGKILL)
            except (ProcessLookupError, PermissionError):
                os.kill(pid, SIGKILL)
            _, status = os.waitpid(pid, 0)
            self.cleanup_others(pid)
            return None, elapsed
        _, status = os.waitpid(pid, 0)
        self.cleanup_others(pid)
        return status, elapsed

    def fork_child(self, body):
        """Fork a child in its own process group that runs `body()` and never returns."""
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            status = 70
            try:
                os.setpgid(0, 0)
                os.close(self.ctl_in)
                os.close(self.ctl_out)
                status = body()
            except BaseException:  # noqa: BLE001 - the child must never fall back into the runner loop
                pass
            finally:
                os._exit(status)
        return pid

    @staticmethod
    def status_fields(status):
        if status is None:
            return {"exit": None, "signal": None}
        if os.WIFSIGNALED(status):
            return {"exit": None, "signal": os.WTERMSIG(status)}
        return {"exit": os.WEXITSTATUS(status), "signal": None}

    # ------------------------------------------------------------------ stdin/stdout tests
    def run_stdio(self, req):
        cfg = self.cfg
        in_fd = os.memfd_create("stdin")
        data = req["stdin"].encode()
        view = memoryview(data)
        while view:
            view = view[os.write(in_fd, view):]
        os.lseek(in_fd, 0, os.SEEK_SET)
        out_fd, err_fd = os.memfd_create("stdout"), os.memfd_create("stderr")
        code = self.code

        def body():
            os.dup2(in_fd, 0)
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            _limits_child(cfg, cfg["timeout"])
            sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8",
                                                         errors="replace")
            sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                                           errors="replace")
            sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                                           errors="replace", line_buffering=True)
            status = 0
            try:
                exec(code, {"__name__": "__main__", "__builtins__": builtins})
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    status = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    status = 1
            except MemoryError:
                status = EXIT_MEMORY
            except BaseException:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                status = 1
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:  # noqa: BLE001 - e.g. EFBIG past the output cap
                    pass
            return status & 0xFF

        pid = self.fork_child(body)
        os.close(in_fd)
        status, elapsed = self.wait_child(pid, cfg["timeout"])
        size = os.fstat(out_fd).st_size
        out = os.pread(out_fd, min(size, cfg["output_limit"]), 0)
        err_size = os.fstat(err_fd).st_size
        err = os.pread(err_fd, _ERR_TAIL, max(0, err_size - _ERR_TAIL))
        os.close(out_fd)
        os.close(err_fd)
        res = {"id": req["id"], "timed_out": status is None, "time": round(elapsed, 4),
               "stdout": out.decode("utf-8", "replace"), "output_capped": size >= cfg["output_limit"],
               "stderr": err.decode("utf-8", "replace")}
        res.update(self.status_fields(status))
        return res

    # ------------------------------------------------------------------ function-call tests
    def run_call(self, req):
        cfg = self.cfg
        res_fd = os.memfd_create("result")
        fn = self.fn

        def body():
            _limits_child(cfg, cfg["timeout"])
            try:
                args, kwargs = decode_value(req["args"]), decode_value(req["kwargs"])  # noqa: F821
                value = fn(*args, **kwargs)
                msg = {"status": "ok", "value": encode_value(value)}  # noqa: F821
            except MemoryError:
                return EXIT_MEMORY
            except BaseException as e:  # noqa: BLE001
                msg = {"status": "error", "error": f"{type(e).__name__}: {e}"[:500]}
            os.write(res_fd, marshal.dumps(msg))
            return 0

        pid = self.fork_child(body)
        status, elapsed = self.wait_child(pid, cfg["timeout"])
        size = os.fstat(res_fd).st_size
        raw = os.pread(res_fd, min(size, cfg["output_limit"]), 0)
        os.close(res_fd)
        res = {"id": req["id"], "timed_out": status is None, "time": round(elapsed, 4)}
        res.update(self.status_fields(status))
        if status is not None and res["exit"] == 0 and raw:
            try:
                msg = marshal.loads(raw)  # written by the candidate's process: may be anything
                res["status"], res["value"], res["error"] = msg["status"], msg.get("value"), msg.get("error")
                if type(res["status"]) is not str or type(res.get("value", "")) not in (str, type(None)):
                    raise TypeError("bad result")
                if type(res["error"]) not in (str, type(None)):
                    raise TypeError("bad result")
            except (ValueError, KeyError, TypeError, EOFError, AttributeError):
                res["status"], res["error"] = "error", "unreadable result"
        else:
            res["status"] = "crashed"
        return res

    # ------------------------------------------------------------------ main loop
    def serve(self, program):
        try:
            self.code = compile(program, "solution.py", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
            self.send({"status": "syntax_error", "error": f"{type(e).__name__}: {e}"[:500]})
            return
        if self.cfg["kind"] == "call":
            decode_value("()")  # noqa: F821 - import `ast` once here, not in every forked call
            module = {"__name__": "solution", "__builtins__": builtins}
            self.send({"status": "loading"})  # from here on, a closed channel is the candidate's doing
            resource.setrlimit(resource.RLIMIT_AS, (self.cfg["memory_mb"] << 20,) * 2)
            try:
                exec(self.code, module)  # the candidate's top level; bounded by the parent's deadline
            except BaseException as e:  # noqa: BLE001
                self.send({"status": "load_error", "memory": isinstance(e, MemoryError),
                           "error": f"{type(e).__name__}: {e}"[:500]})
                return
            self.fn = module.get(self.cfg["entry_point"])
            if not callable(self.fn):
                self.send({"status": "load_error", "memory": False,
                           "error": f"entry point {self.cfg['entry_point']!r} is not defined as a function"})
                return
        self.send({"status": "ready"})
        while (req := read_frame(self.reader)) is not None:
            if req["op"] == "exit":
                self.cleanup_others(os.getpid())
                return
            if self.timed_out and self.cfg["fail_fast"]:
                self.send({"id": req["id"], "timed_out": True, "skipped": True, "exit": None, "signal": None,
                           "time": 0.0, "status": "crashed", "stdout": "", "stderr": "", "output_capped": False})
                continue
            res = self.run_stdio(req) if req["op"] == "run" else self.run_call(req)
            self.timed_out = self.timed_out or res["timed_out"]
            self.send(res)


def main():
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    reader = os.fdopen(ctl_in, "rb", closefd=False)
    first = read_frame(reader)
    cfg, program = first["cfg"], first["program"]
    if cfg["setup"] == "unshare":
        _enter_unshare_sandbox(cfg)
    elif cfg["setup"] == "rlimits" and cfg["uid"] is not None:
        _drop_privileges(cfg)  # started as root (so the parent can vfork): drop before anything else
    os.chdir(cfg["workdir"])
    libc = ctypes.CDLL(None, use_errno=True)
    # Not dumpable: tests forked from here cannot ptrace us or open /proc/<us>/fd to write on our channel.
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    libc.prctl(1, SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (a uid change clears it): die with our parent
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["max_input_bytes"],) * 2)  # children: output_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["max_files"],) * 2)
    if cfg["max_processes"]:
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_processes"],) * 2)
    Runner(cfg, reader, ctl_in, ctl_out).serve(program)


if __name__ == "__main__":
    main()
