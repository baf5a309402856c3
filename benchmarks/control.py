"""DR.Q vs the MR.Q preset vs TD3 on one task, same seeds, side by side in one process.

    nice -n 10 python benchmarks/control.py --env Gym-HalfCheetah-v5 --algos drq,mrq,td3 --seeds 0 \
        --steps 100000 --random-steps 10000 --threads 1 --budget-minutes 80

The algorithms advance round-robin in chunks of `--chunk` environment steps, so at any moment they have seen the
same number of steps; results (`benchmarks/results/control.{json,md,png}`) are rewritten after every chunk, so a
run stopped by its time budget (or killed) leaves valid partial results. Each algorithm's run directory holds
checkpoints with the replay buffer every `--chunk` steps: the same command continues where it stopped.

Speed: "training steps/s" counts environment steps with one training step each (MR.Q/DR.Q: one value + one policy
update, plus 250 encoder updates every 250 steps, i.e. one encoder update per step on average; TD3: one critic
update, an actor update every second step), measured on training wall-clock between the first evaluation after
training began and the last (evaluation time excluded).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mentor.control.cli import parse_overrides  # noqa: E402
from mentor.control.loop import TrainConfig, Trainer, plot_curves  # noqa: E402
from mentor.runs import atomic_write_text, latest_checkpoint  # noqa: E402

# Published anchors (specs/drq.md §5): final (1M-step) means over 10 seeds, from `dmksjfl/DR.Q:results/*.csv` and
# `facebookresearch/MRQ:results/*.txt`, gymnasium/MuJoCo -v4.
PUBLISHED_1M = {"HalfCheetah": {"drq": (14775, 70), "mrq": (12940, 616)}}
# DR.Q's published HalfCheetah-v4 curve, seeds 0, 10, 20, 30 (4 of its 10 seeds), read from `dmksjfl/DR.Q:results/
# drq.csv` (commit cb5f748): returns at 0 / 25k / 50k / 75k / 100k steps.
PUBLISHED_DRQ_SEEDS = {
    0: [-335.63, 5681.81, 8034.19, 8994.97, 9417.51],
    10: [-255.19, 5314.69, 8676.00, 9533.11, 9735.02],
    20: [-259.79, 6480.24, 8845.15, 9527.53, 9605.85],
    30: [-419.62, 4637.81, 8576.10, 10193.56, 10271.84],
}
PUBLISHED_DRQ_STEPS = [0, 25_000, 50_000, 75_000, 100_000]


def published_drq_curve() -> list[tuple[int, float]]:
    return [(s, float(np.mean([v[i] for v in PUBLISHED_DRQ_SEEDS.values()]))) for i, s in enumerate(PUBLISHED_DRQ_STEPS)]


def auc(evals: list[dict]) -> float:
    """Trapezoidal area under the evaluation curve divided by its step span (a mean return over the run)."""
    if len(evals) < 2:
        return float(evals[0]["return_mean"]) if evals else float("nan")
    s = np.array([e["step"] for e in evals], float)
    r = np.array([e["return_mean"] for e in evals], float)
    return float(np.trapezoid(r, s) / (s[-1] - s[0]))


def training_speed(trainer: Trainer) -> float | None:
    """Training steps per second of training wall-clock (evaluations excluded), between the first evaluation after
    training began and the last one; read from the run's own log, so it survives resumes."""
    ev = [e for e in trainer.evals if e["training_steps"] > 0]
    if len(ev) < 2 or ev[-1]["train_seconds"] <= ev[0]["train_seconds"]:
        return None
    return (ev[-1]["training_steps"] - ev[0]["training_steps"]) / (ev[-1]["train_seconds"] - ev[0]["train_seconds"])


def summarise(trainer: Trainer) -> dict:
    ev = trainer.evals
    return {"algo": trainer.cfg.algo, "seed": trainer.cfg.seed, "steps": trainer.step,
            "training_steps": trainer.agent.training_steps, "evals": ev,
            "last_eval": ev[-1]["return_mean"] if ev else None,
            "mean_last3": float(np.mean([e["return_mean"] for e in ev[-3:]])) if ev else None,
            "auc_mean_return": auc(ev) if ev else None, "training_steps_per_s": training_speed(trainer),
            "train_seconds": round(trainer.train_seconds, 1)}


def write_results(args, runs: dict[str, dict], out: Path, started: float, finished: bool) -> None:
    steps = min(r["steps"] for r in runs.values())
    by_algo: dict[str, list[dict]] = {}
    for r in runs.values():
        by_algo.setdefault(r["algo"], []).append(r)
    table = {}
    for algo, rs in by_algo.items():
        m3 = [r["mean_last3"] for r in rs if r["mean_last3"] is not None]
        sps = [r["training_steps_per_s"] for r in rs if r["training_steps_per_s"]]
        table[algo] = {"seeds": [r["seed"] for r in rs], "steps": min(r["steps"] for r in rs),
                       "mean_last3": float(np.mean(m3)) if m3 else None,
                       "last_eval": float(np.mean([r["last_eval"] for r in rs if r["last_eval"] is not None])) if m3 else None,
                       "auc_mean_return": float(np.mean([r["auc_mean_return"] for r in rs if r["auc_mean_return"] is not None])) if m3 else None,
                       "training_steps_per_s": float(np.mean(sps)) if sps else None}
    base = table.get("mrq", {}).get("mean_last3")
    for t in table.values():
        t["mean_last3_ratio_vs_mrq"] = (t["mean_last3"] / base) if (base and t["mean_last3"] is not None and base > 0) else None
    command = " ".join(["python"] + sys.argv)
    if args.report_only and out.with_suffix(".json").exists():  # keep the command that trained the runs
        command = json.loads(out.with_suffix(".json").read_text()).get("command", command)
    result = {
        "benchmark": "control", "env": args.env, "command": command,
        "finished": finished, "steps_reached": steps, "steps_target": args.steps,
        "protocol": {"random_steps": args.random_steps, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
                     "chunk": args.chunk, "threads": args.threads, "buffer": "min(1e6, 2*steps+2) slots (never wraps)"},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "note": "2 CPU cores shared with ~6 other jobs; speeds vary 10-30% between sessions"},
        "elapsed_seconds_this_session": round(time.time() - started, 1),
        "summary": table, "runs": runs, "published_1M": PUBLISHED_1M,
        "published_drq_curve_v4_seeds_0_10_20_30": published_drq_curve(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1))
    ref = {"DR.Q published (v4, 4 seeds)": [p for p in published_drq_curve() if p[0] <= max(steps, 25_000)]}
    plot_curves({k: r["evals"] for k, r in runs.items()}, out.with_suffix(".png"),
                title=f"{args.env}: evaluation return, {steps:,} of {args.steps:,} steps",
                reference=ref if "HalfCheetah" in args.env else None)
    lines = [f"# Control benchmark: {args.env}", "",
             f"Command: `{result['command']}`", "",
             f"Steps reached: **{steps:,}** of {args.steps:,} ({'finished' if finished else 'partial: stopped by the time budget; rerun the command to continue'}). "
             f"Random warm-up {args.random_steps:,} steps for every algorithm; evaluation every {args.eval_every:,} steps, "
             f"{args.eval_episodes} deterministic episodes; torch threads {args.threads}.", "",
             "| algo | seeds | steps | last eval | mean of last 3 evals | ratio vs MR.Q | mean return over the curve (AUC/steps) | training steps/s |",
             "|---|---|---|---|---|---|---|---|"]
    fmt = lambda x, f="{:.1f}": "–" if x is None else f.format(x)  # noqa: E731
    for algo, t in table.items():
        lines.append(f"| {algo} | {t['seeds']} | {t['steps']:,} | {fmt(t['last_eval'])} | {fmt(t['mean_last3'])} | "
                     f"{fmt(t['mean_last3_ratio_vs_mrq'], '{:.2f}')} | {fmt(t['auc_mean_return'])} | {fmt(t['training_steps_per_s'], '{:.2f}')} |")
    if "HalfCheetah" in args.env:
        pub = published_drq_curve()
        lines += ["", "Published reference (HalfCheetah-v4; ours is v5, whose changes are to the environment API, not "
                  "the model or reward): DR.Q's released curve, mean of seeds 0/10/20/30 (4 of 10) from "
                  "`dmksjfl/DR.Q:results/drq.csv`: " + ", ".join(f"{s_:,} steps {v:.0f}" for s_, v in pub) + ". "
                  f"Final 1M-step means over 10 seeds (specs/drq.md §5): DR.Q {PUBLISHED_1M['HalfCheetah']['drq'][0]:,} "
                  f"± {PUBLISHED_1M['HalfCheetah']['drq'][1]}, MR.Q {PUBLISHED_1M['HalfCheetah']['mrq'][0]:,} ± "
                  f"{PUBLISHED_1M['HalfCheetah']['mrq'][1]}."]
    if not finished:
        sps = {a: t["training_steps_per_s"] for a, t in table.items() if t["training_steps_per_s"]}
        left = sum((args.steps - steps) / v for v in sps.values()) / 3600 if sps else float("nan")
        lines += ["", f"Notes: partial run. The per-algorithm run directories (with replay buffers) are under `{args.runs}` "
                  "(not committed); rerunning the command above continues them. At the measured speeds the remaining "
                  f"{args.steps - steps:,} steps of all algorithms need about {left:.0f} h on this machine, run one after "
                  "another. One seed and a few thousand training steps cannot rank the methods; the published DR.Q "
                  "curve is the reference for where a correct implementation should be at 25k steps."]
    lines += ["", "Evaluation curve (mean return of 10 episodes):", "",
              "| step | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    all_steps = sorted({e["step"] for r in runs.values() for e in r["evals"]})
    for s in all_steps:
        cells = []
        for r in runs.values():
            v = [e["return_mean"] for e in r["evals"] if e["step"] == s]
            cells.append(f"{v[0]:.1f}" if v else "")
        lines.append(f"| {s:,} | " + " | ".join(cells) + " |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Gym-HalfCheetah-v5")
    p.add_argument("--algos", default="drq,mrq,td3")
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--random-steps", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--chunk", type=int, default=1_000, help="round-robin granularity and checkpoint interval")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget-minutes", type=float, default=0, help="stop (after the current chunk) past this wall-clock time; 0: none")
    p.add_argument("--report-only", action="store_true", help="rewrite the results from the run directories, no training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="MR.Q/DR.Q hyperparameter override (for quick checks; the benchmark uses the paper defaults)")
    p.add_argument("--runs", default="runs/bench-control", help="directory of the per-algorithm run directories")
    p.add_argument("--out", default="benchmarks/results/control", help="results path without suffix")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    trainers: dict[str, Trainer] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for algo in args.algos.split(","):
            cfg = TrainConfig(env=args.env, algo=algo, seed=seed, steps=args.steps, eval_every=args.eval_every,
                              eval_episodes=args.eval_episodes, random_steps=args.random_steps,
                              checkpoint_every=args.chunk, threads=args.threads,
                              overrides={} if algo == "td3" else parse_overrides(args.overrides))
            run_dir = Path(args.runs) / f"{args.env}-{algo}-s{seed}"
            trainers[f"{algo}-s{seed}"] = Trainer(cfg, run_dir, resume=latest_checkpoint(run_dir) is not None)
    if args.report_only:
        write_results(args, {k: summarise(tr) for k, tr in trainers.items()}, Path(args.out), started,
                      finished=min(t.step for t in trainers.values()) >= args.steps)
        return 0
    target = min(t.step for t in trainers.values())
    while target < args.steps:
        target = min(args.steps, (target // args.chunk + 1) * args.chunk)
        for tr in trainers.values():
            tr.run(until=target)
        runs = {k: summarise(tr) for k, tr in trainers.items()}
        write_results(args, runs, Path(args.out), started, finished=target >= args.steps)
        print(f"[bench] {target:,} steps, {time.time() - started:.0f}s: " +
              ", ".join(f"{k} {r['last_eval'] if r['last_eval'] is None else round(r['last_eval'], 1)}" for k, r in runs.items()), flush=True)
        if args.budget_minutes and time.time() - started > 60 * args.budget_minutes:
            print(f"[bench] time budget reached at {target:,} steps; rerun the same command to continue", flush=True)
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
