"""The code verifier against hostile programs, in every isolation mode this machine runs, plus the fixture.

Each adversarial case is a small problem whose honest answer the attack does not give (the "add" problem:
stdin "2 3" -> "5", or `add(a, b)` with asserts); the attack tries to pass anyway or to harm the host.
For every case we assert the verdict (not passed, and the expected reason), that the host is unharmed
(its files, its secrets, its listening socket), and that no process of the run survives it.

Modes: "bwrap" where bubblewrap works, "unshare" (the fallback without bubblewrap, forced here by naming
it) and "rlimits" (no namespaces; it runs every case but the network one, which it does not guarantee, as
the module docstring of `mentor.verifiers.sandbox` states; there a write to /tmp succeeds but the file is
deleted when the run ends). All cases of one
mode run together through a 2-worker pool, so the suite costs a few seconds per mode.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading

import pytest

from mentor.tasks.data import load_rows
from mentor.verifiers import score as dispatch_score
from mentor.verifiers.code import (CodeVerifierPool, fixture_path, load_code_rows, run_tests, score_batch,
                                   verify, with_limits)
from mentor.verifiers.sandbox import UID_BASE, UID_SLOTS, available_modes, pids_of_uid
from mentor.verifiers.sandbox import harness as harness_module

NONCE = os.urandom(8).hex()
LIMITS = with_limits(timeout=1.0, memory_mb=256, output_limit=1 << 20, max_processes=32, startup_timeout=5.0)
ADD_STDIO = [{"input": "2 3\n", "output": "5\n"}]
ADD_ASSERTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(10, -4) == 6\n"
HARNESS_FILE = harness_module.__file__
MODES = [m for m in ("bwrap", "unshare", "rlimits") if m in available_modes()]
NAMESPACED = ("bwrap", "unshare")


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Listener:
    """A TCP server on the host's loopback that counts connections and greets each one with the nonce."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(f"greeting-{NONCE}\n".encode())
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def _cases(host_dir: str, port: int) -> dict[str, dict]:
    """name -> {program, tests, entry_point, reasons (allowed), modes}. Stdio cases answer "add" wrongly."""
    secret_file = os.path.join(host_dir, "secret.txt")
    c = {}

    def stdio(name, program, reasons, modes=MODES):
        c[name] = dict(program=program, tests=ADD_STDIO, entry_point=None, reasons=set(reasons), modes=modes)

    def calls(name, program, reasons, modes=MODES):
        c[name] = dict(program=program, tests=ADD_ASSERTS, entry_point="add", reasons=set(reasons), modes=modes)

    stdio("infinite_loop", "while True:\n    pass\n", {"timeout"})
    stdio("fork_bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
          {"timeout"})
    # zero-filled 4 MiB blocks touch every page: on a loaded machine the time limit may come first
    stdio("memory_bomb", "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 22))\n", {"memory", "timeout"})
    stdio("memory_bomb_one_block", "block = bytearray(1 << 34)\nprint(len(block))\n", {"memory"})
    stdio("output_100mb", "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n",
          {"output_limit"})
    stdio("recursion_bomb", "import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1) + 1\n"
          "print(f(0))\n", {"runtime_error", "memory", "timeout"})
    # Writing outside the work directory: a root-owned host directory, /etc, and (namespaced modes) /tmp.
    write = ("import os\ntry:\n    with open({path!r}, 'w') as f:\n        f.write('pwned')\n    print('WROTE')\n"
             "except OSError as e:\n    print('blocked', type(e).__name__)\n")
    stdio("write_host_dir", write.format(path=os.path.join(host_dir, "pwned")), {"wrong_answer"})
    stdio("write_etc", write.format(path=f"/etc/mentor-escape-{NONCE}"), {"wrong_answer"})
    stdio("write_tmp", write.format(path=f"/tmp/mentor-escape-{NONCE}"), {"wrong_answer"})  # rlimits: deleted after
    read = ("import sys\ntry:\n    print(open({path!r}).read())\nexcept OSError as e:\n"
            "    print('blocked', type(e).__name__)\n")
    stdio("read_secret_file", read.format(path=secret_file), {"wrong_answer"})
    stdio("read_etc_shadow", read.format(path="/etc/shadow"), {"wrong_answer"})
    stdio("network", "import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', %d), timeout=0.5)\n"
          "    print(s.recv(100).decode())\nexcept OSError as e:\n    print('blocked', type(e).__name__)\n" % port,
          {"wrong_answer"}, modes=NAMESPACED)
    stdio("env_secret", "import os, glob\nfound = [os.environ.get('MENTOR_TEST_SECRET', '')]\n"
          "for p in glob.glob('/proc/*/environ'):\n    try:\n        data = open(p, 'rb').read()\n"
          "    except OSError:\n        continue\n    if b'MENTOR_TEST_SECRET' in data:\n        found.append(p)\n"
          "print(' '.join(x for x in found if x) or 'nothing')\n", {"wrong_answer"})
    stdio("sys_exit_early", "import sys\nsys.exit(0)\nprint(5)\n", {"wrong_answer"})
    stdio("os_exit_early", "import os\nos._exit(0)\n", {"wrong_answer"})
    stdio("fake_pass_marker", "print('PASS')\nprint('All tests passed')\nprint('{\"passed\": true, \"fraction\": 1.0}')\n",
          {"wrong_answer"})
    stdio("daemon", "import os, sys\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
          f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', 'daemon-{NONCE}'])\n"
          "    os._exit(0)\nos.waitpid(pid, 0)\nprint('daemon started')\n", {"wrong_answer"})
    stdio("kill_everything", "import os, signal\nfor pid in (os.getppid(), -1, 1):\n    try:\n"
          "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nprint(4)\n",
          {"wrong_answer", "runtime_error"})
    calls("call_sys_exit_at_import", "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n", {"runtime_error"})
    calls("call_os_exit_at_import", "import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n", {"runtime_error"})
    calls("call_os_exit_in_call", "import os\ndef add(a, b):\n    os._exit(0)\n", {"runtime_error"})
    calls("call_fake_pass_marker", "def add(a, b):\n    print('PASS', flush=True)\n    return 0\n", {"wrong_answer"})
    calls("call_always_equal", "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n"
          "    def __bool__(self):\n        return True\ndef add(a, b):\n    return AlwaysEqual()\n", {"runtime_error"})
    calls("call_monkeypatch", "import builtins, __main__\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\n"
          "builtins.abs = lambda x: 0\nbuiltins.print = lambda *a, **k: None\n"
          "__main__.encode_value = lambda value: 'True'\ndef add(a, b):\n    return None\n", {"wrong_answer"})
    calls("call_forge_channel", "import os\nfor fd in range(3, 40):\n    for line in ('PASS\\n', '{\"op\": \"done\", "
          "\"static_asserts\": 0, \"error\": null}\\n', '{\"id\": 1, \"status\": \"ok\", \"value\": \"True\", "
          "\"timed_out\": false, \"exit\": 0, \"signal\": null, \"time\": 0.0}\\n'):\n        try:\n"
          "            os.write(fd, line.encode())\n        except OSError:\n            pass\n"
          "def add(a, b):\n    return None\n", {"wrong_answer", "runtime_error"})
    calls("call_delete_harness", "import os, shutil, signal\n"
          f"for p in ({HARNESS_FILE!r}, {os.path.dirname(HARNESS_FILE)!r}, '/usr/lib/python3', os.__file__):\n"
          "    try:\n        os.remove(p)\n    except OSError:\n        shutil.rmtree(p, ignore_errors=True)\n"
          "def add(a, b):\n    for pid in (os.getppid(), -1):\n        try:\n            os.kill(pid, signal.SIGKILL)\n"
          "        except OSError:\n            pass\n    return a * b\n", {"wrong_answer", "runtime_error"})
    calls("call_infinite_loop", "def add(a, b):\n    while True:\n        pass\n", {"timeout"})
    calls("call_recursion_bomb", "import sys\nsys.setrecursionlimit(10 ** 7)\ndef add(a, b):\n    return add(a, b) + 1\n",
          {"runtime_error", "memory", "timeout"})
    return c


def _sandbox_uid_pids() -> list[int]:
    """Live processes with a sandbox uid (root only: sandboxes then run as UID_BASE + slot)."""
    if os.geteuid() != 0:
        return []
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except (OSError, ValueError):
            continue
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
        state = next((line for line in status.splitlines() if line.startswith("State:")), "")
        if any(UID_BASE <= int(u) < UID_BASE + UID_SLOTS for u in uid_line.split()[1:]) and "Z" not in state[6:9]:
            found.append(int(name))
    return found


def _pids_with(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


@functools.lru_cache(maxsize=None)
def _attack(mode: str):
    """Run every case of one mode through a 2-worker pool (once); return (cases, results, host observations)."""
    host_dir = tempfile.mkdtemp(prefix="mentor-host-")  # root-owned, outside any work directory
    os.chmod(host_dir, 0o755)  # even traversable, it is not the sandbox uid's to write
    secret = f"secret-{NONCE}"
    with open(os.path.join(host_dir, "secret.txt"), "w") as f:
        f.write(secret)
    os.chmod(os.path.join(host_dir, "secret.txt"), 0o600)
    os.environ["MENTOR_TEST_SECRET"] = secret
    listener = _Listener()
    harness_sha = _sha(HARNESS_FILE)
    cases = {k: v for k, v in _cases(host_dir, listener.port).items() if mode in v["modes"]}
    try:
        with CodeVerifierPool(2, limits=LIMITS, isolation=mode) as pool:
            futures = {name: pool.submit(case["program"], case["tests"], case["entry_point"])
                       for name, case in cases.items()}
            results = {name: f.result() for name, f in futures.items()}
            after = pool.submit("a, b = map(int, input().split())\nprint(a + b)\n", ADD_STDIO).result()
    finally:
        del os.environ["MENTOR_TEST_SECRET"]
        listener.close()
    host = {
        "connections": listener.connections,
        "host_dir": sorted(os.listdir(host_dir)),
        "escaped": [p for p in (f"/tmp/mentor-escape-{NONCE}", f"/etc/mentor-escape-{NONCE}") if os.path.exists(p)],
        "harness_intact": _sha(HARNESS_FILE) == harness_sha,
        "stdlib_intact": os.path.exists(os.__file__),
        "survivors": _pids_with(f"daemon-{NONCE}") + _sandbox_uid_pids(),
        "after": after,
    }
    shutil.rmtree(host_dir)
    return cases, results, host


# (mode, case) pairs: every case in bwrap and unshare; rlimits runs the cases within its guarantees
COMBOS = [(mode, name) for mode in MODES for name, case in sorted(_cases("/nonexistent", 1).items())
          if mode in case["modes"]]


@pytest.mark.parametrize("mode,name", COMBOS)
def test_attack_fails_with_expected_reason(mode, name):
    cases, results, _ = _attack(mode)
    result = results[name]
    assert not result.passed and result.fraction == 0.0, (name, result)
    assert result.reason in cases[name]["reasons"], (name, result.reason, result.detail)
    assert result.isolation == mode


@pytest.mark.parametrize("mode", MODES)
def test_host_unharmed_and_nothing_survives(mode):
    _, _, host = _attack(mode)
    assert host["connections"] == 0
    assert host["host_dir"] == ["secret.txt"]  # "pwned" was never created
    assert host["escaped"] == []
    assert host["harness_intact"] and host["stdlib_intact"]
    assert host["survivors"] == []
    assert host["after"].passed and host["after"].fraction == 1.0 and host["after"].isolation == mode


@pytest.mark.parametrize("mode", MODES)
def test_secrets_never_reach_the_program(mode):
    """The reading cases print what they saw (the verdict's detail shows it): never the secret."""
    _, results, _ = _attack(mode)
    for name in ("read_secret_file", "read_etc_shadow", "env_secret"):
        assert NONCE not in results[name].detail, (name, results[name].detail)
    assert "blocked" in results["read_secret_file"].detail and "blocked" in results["read_etc_shadow"].detail


def _has_cap_sys_admin() -> bool:
    with open("/proc/self/status") as f:
        cap_eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return bool(cap_eff >> 21 & 1)  # CAP_SYS_ADMIN = 21


def test_isolation_modes_available():
    """Every mode this machine can support is found working, so no namespaced case is silently left out:
    rlimits always; unshare as root with CAP_SYS_ADMIN; bwrap wherever it is installed and user namespaces
    are allowed."""
    modes = available_modes()
    assert "rlimits" in modes
    if os.geteuid() == 0 and _has_cap_sys_admin() and shutil.which("unshare"):
        assert "unshare" in modes
    with open("/proc/sys/user/max_user_namespaces") as f:
        userns = int(f.read()) > 0
    if shutil.which("bwrap") and userns and (os.geteuid() != 0 or shutil.which("setpriv")):
        assert "bwrap" in modes


# ----------------------------------------------------------------------------- the fixture set

# fraction passed by each mutant, derived by hand from the tests (one line each):
MUTANT_FRACTIONS = {
    "stdio-sum": [0 / 4,  # sums n-1 numbers: every case is off
                  3 / 4],  # sums |x|: only the "-5" case differs
    "stdio-reverse-words": [3 / 4,  # sorts descending: only "spaced out words" differs from the reversal
                            2 / 4],  # keeps two words: fails "a b c" and the 3-word line
    "stdio-count-primes": [4 / 5,  # counts primes < n: only n=2 (a prime) differs
                           4 / 5],  # sieve stops before sqrt(n): only n=10 (9 = 3*3 stays) differs
    "stdio-transpose": [1 / 3],  # prints the matrix itself: only 1x1 agrees
    "stdio-brackets": [1 / 3],  # counts openers: "(]" and ")(" look balanced
    "stdio-mean": [2 / 3],  # floor division: 7//3 = 2 differs, 0 and 10 agree
    "call-has-close-elements": [5 / 6,  # adjacent pairs only: misses 5.9/5.0 at 0.95
                                4 / 6],  # half the threshold: fails 0.95 (gap 0.9) and 1.0 (gap 0.9)
    "call-remove-occ": [5 / 6,  # removes every occurrence: 'aXaXa' has three a's
                        1 / 6],  # removes the first only: right only when ch is absent
    "call-is-palindrome": [4 / 7,  # raw string: fails the three mixed-case/punctuated ones
                           4 / 7],  # no lower-casing: fails the same three
    "call-two-sum": [0 / 4,  # returns a list, never equal to the tuple
                     2 / 4],  # allows i == j: (0, 0) for [3, 2, 4] and [3, 3]
    "call-flatten": [1 / 4],  # one level only: right for [] alone
    "call-word-freq": [2 / 3],  # keeps case: fails 'The the THE cat'
    "call-mean-abs-dev": [1 / 4,  # divides by n-1: right only for one element (0/1)
                          3 / 4],  # deviation around the median: differs only for [0, 0, 3]
}


@pytest.fixture(scope="module")
def fixture_results():
    rows = [json.loads(line) for line in open(fixture_path())]
    prompts = load_code_rows(fixture_path())
    with CodeVerifierPool(2) as pool:
        refs = [pool.submit_completion(f"Here it is:\n```python\n{r['solution']}```\n", p) for r, p in zip(rows, prompts)]
        muts = [[pool.submit_completion(m, p) for m in r["mutants"]] for r, p in zip(rows, prompts)]
        return rows, [f.result() for f in refs], [[f.result() for f in fs] for fs in muts]


def test_fixture_has_both_formats():
    rows = [json.loads(line) for line in open(fixture_path())]
    kinds = {isinstance(r["answer"]["tests"], list) and isinstance(r["answer"]["tests"][0], dict) for r in rows}
    assert len(rows) == 13 and kinds == {True, False}
    assert sorted(r["id"] for r in rows) == sorted(MUTANT_FRACTIONS)


def test_reference_solutions_pass(fixture_results):
    rows, refs, _ = fixture_results
    for row, res in zip(rows, refs):
        assert res.passed and res.fraction == 1.0 and res.reason == "passed", (row["id"], res)


def test_mutants_fail_with_exact_fractions(fixture_results):
    rows, _, muts = fixture_results
    for row, results in zip(rows, muts):
        got = [r.fraction for r in results]
        assert got == pytest.approx(MUTANT_FRACTIONS[row["id"]], abs=1e-12), row["id"]
        assert all(not r.passed and r.reason == "wrong_answer" for r in results), row["id"]


def test_generic_loader_and_dispatch_use_the_code_verifier():
    """Rows go through the shared data path (load_rows) and the verifier table reaches `verify`."""
    prompts = {p.id: p for p in load_rows(str(fixture_path()), verifier="code")}
    row = next(json.loads(line) for line in open(fixture_path()) if '"call-flatten"' in line)
    prompt = prompts["call-flatten"]
    assert prompt.verifier == "code"
    assert verify(row["solution"], prompt) == 1.0
    assert dispatch_score(row["mutants"][0], prompt) == pytest.approx(1 / 4, abs=1e-12)
    # the batch entry point for training loops: same rewards, verified in parallel
    assert score_batch([row["solution"], row["mutants"][0]], [prompt, prompt]) == pytest.approx([1.0, 0.25], abs=1e-12)


def test_reasons_for_ordinary_failures():
    stdio = [{"input": "1\n", "output": "2\n"}, {"input": "5\n", "output": "10\n"}]
    double = "print(int(input()) * 2)\n"
    assert run_tests(double, stdio, limits=LIMITS).fraction == 1.0
    syntax = run_tests("def f(:\n", stdio, limits=LIMITS)
    assert (syntax.reason, syntax.fraction, len(syntax.tests)) == ("syntax_error", 0.0, 2)
    crash = run_tests("x = int(input())\nprint(x * 2 if x < 3 else 1 / 0)\n", stdio, limits=LIMITS)
    assert [t.reason for t in crash.tests] == ["passed", "runtime_error"] and crash.fraction == 0.5
    assert "ZeroDivisionError" in crash.tests[1].detail
    wrong_exit = run_tests("print(int(input()) * 2)\nraise SystemExit(3)\n", stdio, limits=LIMITS)
    assert wrong_exit.reason == "runtime_error" and wrong_exit.fraction == 0.0  # right output, non-zero exit
    # fail fast: after the first timeout the remaining cases are not run
    slow = run_tests("import time\nx = int(input())\ntime.sleep(5 if x == 1 else 0)\nprint(2 * x)\n", stdio, limits=LIMITS)
    assert [t.reason for t in slow.tests] == ["timeout", "timeout"] and "not run" in slow.tests[1].detail


def test_assert_program_abort_pads_to_the_assert_count():
    # 3 assert statements; the second call happens outside an assert and raises in the sandbox, so the
    # run aborts after 1 evaluated assert: 1 passed + 1 abort + 1 padding = 1/3.
    tests = ("def check(candidate):\n    assert candidate(1) == 1\n    r = candidate(0)\n    assert r == 0\n"
             "    assert candidate(2) == 0.5\n")
    res = run_tests("def inv(x):\n    return 1 / x\n", tests, entry_point="inv", limits=LIMITS)
    assert [t.reason for t in res.tests] == ["passed", "runtime_error", "runtime_error"]
    assert res.fraction == pytest.approx(1 / 3, abs=1e-12)
    # MBPP style: a list of assert lines calling the entry point by name; floats and tuples round-trip
    mbpp = ["assert halves(3) == (1.5, 1.5)", "assert halves(-1) == (-0.5, -0.5)", "assert halves(0) == (1, 1)"]
    res = run_tests("def halves(x):\n    return (x / 2, x / 2)\n", mbpp, entry_point="halves", limits=LIMITS)
    assert [t.passed for t in res.tests] == [True, True, False] and res.fraction == pytest.approx(2 / 3, abs=1e-12)


def test_code_recipe_loads_and_its_data_verifies():
    """configs/code-grpo.yaml resolves, and its data path yields code prompts the verifier scores."""
    from pathlib import Path

    from mentor.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "code-grpo.yaml")
    assert (cfg.algo, cfg.data.verifier, cfg.data.task) == ("grpo", "code", None)
    prompts = load_rows(str(root / cfg.data.path), verifier=cfg.data.verifier)
    assert len(prompts) == 13 and {p.verifier for p in prompts} == {"code"}
    stdio = next(p for p in prompts if p.id == "stdio-sum")
    completion = "Sum them:\n```python\nn = int(input())\nprint(sum(map(int, input().split())))\n```"
    assert dispatch_score(completion, stdio) == 1.0
