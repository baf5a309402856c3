"""Code-verifier throughput: verifications per second at 1 and 2 workers, per isolation mode, side by side.

Workloads (each verification = one candidate program against all of its tests, sandbox start and clean-up
included):
    trivial    ``print(int(input()) + 1)`` against 1 stdin/stdout case;
    realistic  the 13 fixture problems (`mentor/data/code_fixture.jsonl`: 6 stdin/stdout with 3-5 cases,
               7 function-call assert programs with 3-7 asserts) with the reference solution and every mutant:
               34 programs (21 of them fail some tests), each verified once.
Modes: every isolation mode that works here ("bwrap", "unshare", "rlimits"). The baseline is an unsandboxed
``subprocess.run([python, "-c", program])`` per stdin/stdout case (what a naive verifier does: no isolation,
no limits), at the same worker counts, for the trivial workload. Configurations interleave: the jobs are cut
into `--rounds` chunks and every configuration (warm pool kept open) runs chunk 1, then chunk 2, ..., so
load swings on a shared 2-core machine hit all of them alike. Compare within one run.

    nice -n 10 python benchmarks/code_verifier.py      # writes benchmarks/results/code_verifier.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mentor.verifiers.code import CodeVerifierPool, fixture_path  # noqa: E402
from mentor.verifiers.sandbox import available_modes  # noqa: E402

TRIVIAL = ("print(int(input()) + 1)\n", [{"input": "41\n", "output": "42\n"}], None)


def realistic_jobs() -> list[tuple[str, object, str | None]]:
    jobs = []
    for line in open(fixture_path()):
        row = json.loads(line)
        tests, entry = row["answer"]["tests"], row["answer"]["entry_point"]
        for program in [row["solution"], *row["mutants"]]:
            jobs.append((program, tests, entry))
    return jobs


class PoolRunner:
    """One configuration: a warm CodeVerifierPool (mode, workers) that runs chunks of jobs and keeps totals."""

    def __init__(self, mode: str, workers: int, first_job):
        self.pool = CodeVerifierPool(workers, isolation=mode)
        self.pool.submit(*first_job).result()  # warm: probe done, first sandbox paid
        self.seconds, self.results = 0.0, []

    def run(self, jobs: list) -> None:
        start = time.perf_counter()
        self.results += [f.result() for f in [self.pool.submit(*job) for job in jobs]]
        self.seconds += time.perf_counter() - start

    def summary(self) -> dict:
        self.pool.close()
        walls = [r.wall_time for r in self.results]
        return {**_rates(len(walls), self.seconds, walls), "tests_run": sum(len(r.tests) for r in self.results),
                "passed": sum(r.passed for r in self.results),
                "sandbox_errors": sum(r.reason == "sandbox_error" for r in self.results)}


class BaselineRunner:
    """Unsandboxed: ``subprocess.run([python, "-c", program])`` per stdin/stdout case, on a thread pool."""

    def __init__(self, python: str, workers: int):
        self.python, self.executor = python, ThreadPoolExecutor(workers)
        self.seconds, self.results = 0.0, []

    def _one(self, job):
        program, tests, _ = job
        t0 = time.perf_counter()
        ok = all(subprocess.run([self.python, "-c", program], input=t["input"], capture_output=True, text=True,
                                timeout=10).stdout.strip() == t["output"].strip() for t in tests)
        return ok, time.perf_counter() - t0

    def run(self, jobs: list) -> None:
        start = time.perf_counter()
        self.results += list(self.executor.map(self._one, jobs))
        self.seconds += time.perf_counter() - start

    def summary(self) -> dict:
        self.executor.shutdown()
        return {**_rates(len(self.results), self.seconds, [w for _, w in self.results]),
                "passed": sum(ok for ok, _ in self.results)}


def _rates(n: int, seconds: float, walls: list[float]) -> dict:
    walls = sorted(walls)
    return {"verifications": n, "seconds": round(seconds, 3), "per_second": round(n / seconds, 2),
            "latency_p50_s": round(statistics.median(walls), 4),
            "latency_p95_s": round(walls[int(0.95 * (len(walls) - 1))], 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=24, help="verifications per configuration (trivial workload)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds per workload")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "code_verifier"))
    args = ap.parse_args()
    modes = available_modes()
    workloads = {"trivial": [TRIVIAL] * args.jobs, "realistic": realistic_jobs()}
    load_before = os.getloadavg()
    rows = []
    t_start = time.time()
    for workload, jobs in workloads.items():
        runners = {(mode, w): PoolRunner(mode, w, jobs[0]) for mode in modes for w in (1, 2)}
        if workload == "trivial":
            python = next(iter(modes.values()))
            runners.update({("unsandboxed subprocess", w): BaselineRunner(python, w) for w in (1, 2)})
        chunks = [jobs[i::args.rounds] for i in range(args.rounds)]
        for chunk in chunks:  # every configuration runs each chunk in turn: load swings hit them all alike
            for runner in runners.values():
                runner.run(chunk)
        for (mode, workers), runner in runners.items():
            rows.append({"workload": workload, "mode": mode, "workers": workers, **runner.summary()})
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "nice -n 10 python benchmarks/code_verifier.py" + (f" --jobs {args.jobs}" if args.jobs != 24 else "")
            + (f" --rounds {args.rounds}" if args.rounds != 4 else ""),
            "python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus(),
            "interpreters": modes, "total_seconds": round(time.time() - t_start, 1),
            "load_average_1min": {"before": round(load_before[0], 1), "after": round(os.getloadavg()[0], 1)}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(meta, rows))
    print(_markdown(meta, rows))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _markdown(meta: dict, rows: list[dict]) -> str:
    load = meta["load_average_1min"]
    lines = ["# Code verifier throughput", "", f"`{meta['command']}` — {meta['cpus']} CPUs shared with other jobs "
             f"(1-minute load average {load['before']} before, {load['after']} after), Python {meta['python']} "
             f"(sandboxed programs: {', '.join(sorted(set(meta['interpreters'].values())))}), "
             f"{meta['total_seconds']} s in all.", "",
             "Verifications per second (one candidate against all its tests, sandbox start and clean-up included); "
             "ratio = 2 workers / 1 worker.", "",
             "| workload | isolation | 1 worker /s | 2 workers /s | ratio | p50 latency (1 w) | p95 latency (1 w) |",
             "|---|---|---|---|---|---|---|"]
    by = {(r["workload"], r["mode"], r["workers"]): r for r in rows}
    for workload, mode in dict.fromkeys((r["workload"], r["mode"]) for r in rows):
        one, two = by[(workload, mode, 1)], by[(workload, mode, 2)]
        lines.append(f"| {workload} | {mode} | {one['per_second']:.2f} | {two['per_second']:.2f} | "
                     f"{two['per_second'] / one['per_second']:.2f} | {one['latency_p50_s'] * 1000:.0f} ms | "
                     f"{one['latency_p95_s'] * 1000:.0f} ms |")
    base = {w: by.get(("trivial", "unsandboxed subprocess", w)) for w in (1, 2)}
    if base[1]:
        lines += ["", "Sandbox cost on the trivial program (unsandboxed subprocess rate / sandboxed rate, 1 worker): "
                  + ", ".join(f"{m} {base[1]['per_second'] / by[('trivial', m, 1)]['per_second']:.1f}x"
                              for m in meta["interpreters"]) + "."]
    errors = sum(r.get("sandbox_errors", 0) for r in rows)
    first = by[("realistic", next(iter(meta["interpreters"])), 1)]
    lines += ["", f"Sandbox errors: {errors}. Realistic workload: {first['passed']} of {first['verifications']} programs "
              f"pass (the references; mutants fail by design), {first['tests_run']} tests in all.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
