"""The trusted assert harness: runs a test program (HumanEval ``check(candidate)`` or MBPP asserts).

Started by the parent as ``python -I -S -c <values.py + this file>`` outside the sandbox, as a separate
process (the test program is data, so it does not run inside the trainer) with its own rlimits. It never
loads the candidate's code: the name of the entry point (and ``candidate``) is bound to a proxy whose
calls are sent, as literal text, to the sandboxed runner through the parent, and whose return values
come back as literal text decoded into plain values (``values.decode_value``). So every comparison of
the test program runs here, on plain values, out of the candidate's reach.

Each ``assert`` statement is rewritten to a call that evaluates its condition and records one test
outcome (an assert inside a loop records one outcome per iteration), so one failing assert does not hide
the others. If the program ends with an exception outside an assert, the harness reports it and the
parent scores the run as aborted.

Protocol (in: marshal frames; out: one flat JSON object per line, see values.py): in: ``{"program",
"entry_point", "memory_mb", "uid"}``, then one reply per call; out: ``{"op": "call", "args", "kwargs"}``,
``{"op": "assert", "line", "passed", "reason", "detail"}``, and last ``{"op": "done", "static_asserts",
"error_reason", "error_detail"}`` (the error fields are null when the program ran to its end).
"""

import ast
import os
import resource
import sys


class CandidateFailure(Exception):
    """A call into the sandbox did not return a value (runtime error, timeout, memory, crash)."""

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Channel:
    def __init__(self, reader, out_fd):
        self.reader, self.out_fd = reader, out_fd

    def send(self, obj):
        data = (dumps_flat(obj) + "\n").encode()  # noqa: F821 (values.py)
        view = memoryview(data)
        while view:
            view = view[os.write(self.out_fd, view):]

    def receive(self):
        frame = read_frame(self.reader)  # noqa: F821 (values.py)
        if frame is None:
            raise SystemExit(3)  # the parent went away
        return frame


class Candidate:
    """Stands for the candidate's entry point; each call is one round trip to the sandbox."""

    def __init__(self, channel, name):
        self._channel, self.__name__ = channel, name

    def __call__(self, *args, **kwargs):
        try:
            payload = {"op": "call", "args": encode_value(args), "kwargs": encode_value(kwargs)}  # noqa: F821
        except (TypeError, ValueError) as e:
            raise CandidateFailure("harness_error", f"argument cannot be sent to the sandbox: {e}") from None
        self._channel.send(payload)
        reply = self._channel.receive()
        if reply["status"] != "ok":
            raise CandidateFailure(reply["reason"], reply.get("error") or reply["reason"])
        try:
            return decode_value(reply["value"])  # noqa: F821
        except ValueError as e:
            raise CandidateFailure("wrong_answer", f"returned value is not a plain literal: {e}") from None


class _AssertRewriter(ast.NodeTransformer):
    """``assert cond, msg`` -> ``__mentor_assert__(lambda: cond, lineno)``."""

    def __init__(self):
        self.count = 0

    def visit_Assert(self, node):
        self.count += 1
        call = ast.Call(func=ast.Name("__mentor_assert__", ast.Load()),
                        args=[ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                                            defaults=[]), body=node.test),
                              ast.Constant(node.lineno)], keywords=[])
        return ast.copy_location(ast.Expr(call), node)


def main():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # the test program's prints must not reach the protocol
    channel = Channel(os.fdopen(ctl_in, "rb", closefd=False), ctl_out)
    job = channel.receive()
    if job["uid"] is not None:  # started as root (so the parent can vfork): become nobody first
        os.setgroups([])
        os.setresgid(job["uid"], job["uid"], job["uid"])
        os.setresuid(job["uid"], job["uid"], job["uid"])
    memory = job["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    rewriter = _AssertRewriter()
    tree = ast.fix_missing_locations(rewriter.visit(ast.parse(job["program"], "tests.py")))
    code = compile(tree, "tests.py", "exec")
    evaluated = [0]

    def record(condition, line):
        evaluated[0] += 1
        try:
            passed, reason, detail = bool(condition()), "passed", ""
            if not passed:
                reason, detail = "wrong_answer", f"assert on line {line} is false"
        except CandidateFailure as e:
            passed, reason, detail = False, e.reason, e.detail
        except Exception as e:  # noqa: BLE001 - e.g. comparing a wrong-typed return value
            passed, reason, detail = False, "wrong_answer", f"assert on line {line} raised {type(e).__name__}: {e}"
        channel.send({"op": "assert", "line": line, "passed": passed, "reason": reason, "detail": str(detail)[:500]})

    proxy = Candidate(channel, job["entry_point"] or "candidate")
    scope = {"__name__": "__tests__", "__mentor_assert__": record, "candidate": proxy}
    if job["entry_point"]:
        scope[job["entry_point"]] = proxy
    error = (None, None)
    try:
        exec(code, scope)
        check = scope.get("check")
        if evaluated[0] == 0 and callable(check):
            check(proxy)  # HumanEval: the test program defines check(candidate) and leaves the call to us
    except CandidateFailure as e:
        error = (e.reason, str(e.detail)[:500])
    except BaseException as e:  # noqa: BLE001
        error = ("test_error", f"{type(e).__name__}: {e}"[:500])
    channel.send({"op": "done", "static_asserts": rewriter.count, "error_reason": error[0], "error_detail": error[1]})


if __name__ == "__main__":
    main()
