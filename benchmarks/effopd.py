"""Plain OPD vs OPD + EffOPD (specs/effopd.md §4.2): same student, teacher, seeds and learning rate, side by side.

    nice -n 10 python benchmarks/effopd.py --teacher TEACHER_DIR --student STUDENT_DIR --steps 100 --seeds 0 \
        --lrs 3e-4,1e-4 --threads 1

Each arm is an ordinary `mentor train` run (algo=opd; the EffOPD arm adds `controllers: [effopd]` with the
spec's defaults: 50 validation prompts from the training set, one sample each at the training temperature, K = 5
candidates, strict acceptance). Optional arm `opd_lr3x`: plain OPD at 3× the learning rate (the paper's
"faster but oscillating" ablation).

Metric (spec §4.2): **steps-to-target** = the first evaluated step at which held-out greedy accuracy reaches plain
OPD's final accuracy (mean of its last 3 evaluations) minus 1 point, per seed; also the training wall time to get
there (sum of `time/step`, which includes EffOPD's validation sampling but not the held-out evaluations) and the
sampled tokens (training rollouts + validation completions). Ratios are plain OPD / EffOPD (> 1: EffOPD faster).
Results (`benchmarks/results/effopd.{json,md,png}`) are rewritten after every finished run; finished runs (with a
`final/` model) are reused when the same command is run again, so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mentor.config import load_config  # noqa: E402
from mentor.controllers.effopd import EffOPDController  # noqa: E402,F401  (registers "effopd")
from mentor.runs import atomic_write_text, read_jsonl  # noqa: E402

ARMS = ("opd", "effopd", "opd_lr3x")


def recipe(args, lr: float, arm: str, seed: int, out: Path) -> list[str]:
    lr = lr * (3 if arm == "opd_lr3x" else 1)
    o = ["algo=opd", f"model.path={args.student}", f"distill.teacher={args.teacher}", "data.task=add",
         f"data.task_args={{digits: {args.digits}}}", f"sampling.max_new_tokens={args.max_new_tokens}", f"optim.lr={lr}",
         "optim.schedule=constant", f"optim.batch_size={args.batch}", f"optim.micro_batch_size={args.batch}",
         f"run.seed={seed}", f"run.steps={args.steps}", f"eval.every={args.eval_every}", f"eval.size={args.eval_size}",
         "run.save_every=0", "run.progress=false", f"run.threads={args.threads}", f"run.out_dir={out}"]
    if arm == "effopd":
        o += ["controllers=[effopd]", f"controller_args={{effopd: {args.effopd_args}}}"]
    return o


def collect(run_dir: Path) -> dict:
    """Eval curve, cumulative training time / sampled tokens per step, and the EffOPD searches of one run."""
    recs = read_jsonl(run_dir / "metrics.jsonl")
    cum_t, cum_tok, t, tok = {0: 0.0}, {0: 0}, 0.0, 0
    for r in recs:
        if r["step"] == 0:
            continue
        t += r.get("time/step", 0.0)
        tok += int(r.get("sampled_tokens", 0)) + int(r.get("effopd/val_tokens", 0))
        cum_t[r["step"]], cum_tok[r["step"]] = t, tok
    evals = [(r["step"], r["eval/accuracy"]) for r in recs if "eval/accuracy" in r]
    searches = [{"t": r["effopd/t"], "accepted_k": r["effopd/accepted_k"], "v0": r["effopd/v0"],
                 "v_acc": r["effopd/v_acc"], "delta_norm": r["effopd/delta_norm"],
                 "scores": [r[f"effopd/score_k{k}"] for k in range(1, r["effopd/candidates_evaluated"] + 1)],
                 "val_tokens": r["effopd/val_tokens"], "time": r["effopd/time"]}
                for r in recs if r.get("effopd/search")]
    return {"evals": evals, "time": cum_t, "tokens": cum_tok, "searches": searches,
            "val_time": sum(s["time"] for s in searches), "val_tokens": sum(s["val_tokens"] for s in searches)}


def first_reaching(evals: list[tuple[int, float]], target: float) -> int | None:
    return next((s for s, a in evals if a >= target), None)


def summarise(results: dict, arms: list[str], seeds: list[int], lrs: list[float]) -> dict:
    """Per (learning rate, seed): plain OPD's target and, per arm, steps / time / tokens to reach it."""
    out = {}
    for lr, seed in [(lr, seed) for lr in lrs for seed in seeds]:
        base = results.get(f"{lr:g}/opd/{seed}")
        if base is None:
            continue
        final = float(np.mean([a for _, a in base["evals"][-3:]]))
        target = final - 0.01
        row = {"opd_final": final, "target": target}
        for arm in arms:
            r = results.get(f"{lr:g}/{arm}/{seed}")
            if r is None:
                continue
            s = first_reaching(r["evals"], target)
            row[arm] = {"steps_to_target": s, "time_to_target": r["time"][s] if s is not None else None,
                        "tokens_to_target": r["tokens"][s] if s is not None else None,
                        "final": float(np.mean([a for _, a in r["evals"][-3:]])), "best": max(a for _, a in r["evals"]),
                        "total_time": r["time"][max(r["time"])], "val_time": r["val_time"], "val_tokens": r["val_tokens"],
                        "accepted_k": [(x["t"], x["accepted_k"]) for x in r["searches"]]}
        for arm in arms:
            if arm != "opd" and arm in row and row[arm]["steps_to_target"] and row["opd"]["steps_to_target"]:
                # both reached the target after step 0 (a target met at step 0 makes the ratio meaningless)
                row[arm]["ratio_steps"] = row["opd"]["steps_to_target"] / row[arm]["steps_to_target"]
                row[arm]["ratio_time"] = row["opd"]["time_to_target"] / row[arm]["time_to_target"]
                row[arm]["ratio_tokens"] = row["opd"]["tokens_to_target"] / row[arm]["tokens_to_target"]
        out[f"{lr:g}/{seed}"] = row
    return out


def write_results(args, results: dict, summary: dict, command: str, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dest.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "config": vars(args), "machine": platform.platform(), "summary": summary,
               "runs": {k: {**v, "time": {str(s): t for s, t in v["time"].items()},
                            "tokens": {str(s): t for s, t in v["tokens"].items()}} for k, v in results.items()}}
    atomic_write_text(dest / "effopd.json", json.dumps(payload, indent=1))

    lrs = sorted({k.split("/")[0] for k in results}, key=float, reverse=True)
    fig, axes = plt.subplots(len(lrs), 2, figsize=(11, 3.8 * len(lrs)), squeeze=False)
    colors = {"opd": "C0", "effopd": "C3", "opd_lr3x": "C2"}
    for key, r in results.items():
        lr, arm, seed = key.split("/")
        row_axes = axes[lrs.index(lr)]
        xs, ys = zip(*r["evals"])
        ls = "-" if seed == str(args.seeds[0]) else ":"
        label = f"{arm} seed {seed}"
        row_axes[0].plot(xs, ys, ls, marker=".", c=colors[arm], label=label)
        row_axes[1].plot([r["time"][s] for s in xs], ys, ls, marker=".", c=colors[arm], label=label)
        for srch in r["searches"]:
            if srch["accepted_k"]:
                row_axes[0].axvline(srch["t"], c=colors[arm], alpha=0.25)
                row_axes[0].annotate(f"k={srch['accepted_k']}", (srch["t"], 0.02), fontsize=7, color=colors[arm],
                                     rotation=90)
    for key, row in summary.items():
        axes[lrs.index(key.split("/")[0])][0].axhline(row["target"], c="gray", ls="--", lw=0.8)
    for lr, row_axes in zip(lrs, axes):
        row_axes[0].set_xlabel("optimizer step (searches at 1, 2, 4, …; shaded lines: accepted)")
        row_axes[1].set_xlabel("training wall time, s (validation included, held-out eval excluded)")
        for ax in row_axes:
            ax.set_ylabel(f"held-out greedy acc. (lr {lr})")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("OPD vs OPD + EffOPD (dashed: plain OPD final − 1 pt)")
    fig.tight_layout()
    fig.savefig(dest / "effopd.png", dpi=90)
    plt.close(fig)

    L = ["# EffOPD vs plain OPD", "", f"Command: `{command}`", "",
         f"Task: {args.digits}-digit addition; student `{args.student}`; teacher `{args.teacher}`; "
         f"{args.batch} prompts × 1 sample per step, {args.steps} steps, constant lr; held-out greedy accuracy on "
         f"{args.eval_size} prompts every {args.eval_every} steps. EffOPD args: `{args.effopd_args}`. Machine: "
         f"{platform.platform()}, {args.threads} torch thread(s), shared CPU (times are comparable only within this run).",
         "", "| lr | seed | target (OPD final − 1 pt) | arm | steps to target | time to target (s) | tokens to target | "
         "final acc | steps ratio | time ratio | token ratio | validation time (s, share of the run) | "
         "accepted k per search (t: k) |",
         "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    fmt = lambda x, f: "–" if x is None else format(x, f)  # noqa: E731
    for key, row in summary.items():
        lr, seed = key.split("/")
        for arm in [a for a in ARMS if a in row]:
            a = row[arm]
            L.append(f"| {lr} | {seed} | {row['target']:.3f} | {arm} | {fmt(a['steps_to_target'], 'd')} | "
                     f"{fmt(a['time_to_target'], '.0f')} | {fmt(a['tokens_to_target'], 'd')} | {a['final']:.3f} | "
                     f"{fmt(a.get('ratio_steps'), '.2f')} | {fmt(a.get('ratio_time'), '.2f')} | "
                     f"{fmt(a.get('ratio_tokens'), '.2f')} | {a['val_time']:.1f} ({a['val_time'] / a['total_time']:.1%}) | "
                     + (", ".join(f"{t}: {k}" for t, k in a["accepted_k"]) or "–") + " |")
    L += ["", "Ratios are plain OPD / arm (> 1: the arm reaches the target sooner). Final accuracy is the mean of the "
          "last 3 evaluations. Runs execute one after another on a shared machine whose load changes: wall times of "
          "different runs are confounded by that load; the validation share is measured inside one run.", "",
          "How the teacher and student were made, and what these numbers mean: docs/effopd.md, \"Measured\".", "",
          "![curves](effopd.png)"]
    atomic_write_text(dest / "effopd.md", "\n".join(L) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--arms", type=lambda s: s.split(","), default=["opd", "effopd"])
    p.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")], default=[3e-4],
                   help="learning rates; each gets its own plain-OPD baseline")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--effopd-args", default="{}", help="YAML mapping for controller_args.effopd")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/bench-effopd", help="run directories")
    p.add_argument("--results", default=str(Path(__file__).parent / "results"))
    p.add_argument("--budget-minutes", type=float, default=0, help="start no new run after this (0: no limit)")
    args = p.parse_args(argv)
    bad = [a for a in args.arms if a not in ARMS]
    if bad or "opd" not in args.arms:
        p.error(f"--arms: choose from {list(ARMS)}, including opd (the baseline); got {args.arms}")
    import torch

    torch.set_num_threads(args.threads)
    from mentor.train import train

    command = "nice -n 10 python benchmarks/effopd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t_start = time.perf_counter()
    results: dict = {}
    for lr, seed, arm in [(lr, seed, arm) for lr in args.lrs for seed in args.seeds for arm in args.arms]:
        out = Path(args.work) / f"lr{lr:g}" / f"{arm}-seed{seed}"
        if not (out / "final" / "config.json").exists():
            if args.budget_minutes and time.perf_counter() - t_start > 60 * args.budget_minutes:
                print(f"[bench] budget spent: not starting {arm} seed {seed}", flush=True)
                continue
            if out.exists():
                import shutil

                shutil.rmtree(out)
            print(f"[bench] lr {lr:g} {arm} seed {seed} → {out}", flush=True)
            train(load_config(None, recipe(args, lr, arm, seed, out)))
        key = f"{lr:g}/{arm}/{seed}"
        results[key] = collect(out)
        summary = summarise(results, args.arms, args.seeds, args.lrs)
        write_results(args, results, summary, command, Path(args.results))
        print(f"[bench] {key}: evals {results[key]['evals']}", flush=True)
    print(json.dumps(summarise(results, args.arms, args.seeds, args.lrs), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
