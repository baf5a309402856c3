"""Can a ~1M-parameter model learn each procedural task family by SFT on CPU? (issue 2, item 4)

For every family at its default knobs: SFT of the `tiny:1m` preset on ground-truth traces (mentor's own training
loop, `mentor.train.train`), same optimiser settings as configs/sft-add.yaml, a fixed number of steps, then greedy
accuracy on held-out prompts (the `eval` side of the partition, never trained on). Also the answer-only variant
(`scratchpad=false`) of the same families, side by side, to show what the scratchpads buy.

    nice -n 10 python benchmarks/task_learnability.py --steps 600 --eval-size 128

Writes `<out>.json`, `<out>.md` and `<out>.png`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mentor.config import load_config
from mentor.tasks import TASKS

MAX_NEW = {"add": 40, "mul": 40, "sort": 56, "count": 40, "mod": 72, "expr": 32, "chain": 64}


def run_one(task: str, scratchpad: bool, steps: int, eval_size: int, work: Path, threads: int) -> dict:
    from mentor.train import train

    out_dir = work / f"{task}-{'pad' if scratchpad else 'direct'}"
    cfg = load_config(None, [
        "algo=sft", f"run.out_dir={out_dir}", "run.seed=0", f"run.steps={steps}", "run.save_every=0",
        "run.progress=false", f"run.threads={threads}", "run.keep_checkpoints=1", "model.path=tiny:1m",
        f"data.task={task}", f"data.task_args={{scratchpad: {str(scratchpad).lower()}}}",
        "data.num_train=20000", f"data.num_eval={eval_size}",
        "optim.lr=0.002", "optim.warmup_steps=20", "optim.schedule=cosine", "optim.min_lr_ratio=0.05",
        "optim.batch_size=64", "optim.micro_batch_size=64", f"sampling.max_new_tokens={MAX_NEW[task]}",
        f"eval.every={steps}", f"eval.size={eval_size}", "eval.greedy=true",
    ])
    t0 = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if "eval/accuracy" in r][-1]
    return {"task": task, "scratchpad": scratchpad, "steps": steps, "seconds": round(seconds, 1),
            "accuracy": final["eval/accuracy"], "eval_n": final.get("eval/n"),
            "completion_len": final.get("eval/length/mean")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on an oversubscribed machine)")
    ap.add_argument("--direct", action="store_true", help="also train the answer-only (scratchpad=false) variant")
    ap.add_argument("--out", default="benchmarks/results/task_learnability")
    args = ap.parse_args()

    results = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"nice -n 10 python benchmarks/task_learnability.py --steps {args.steps} --eval-size {args.eval_size}" + \
        (f" --threads {args.threads}" if args.threads != 2 else "") + (" --direct" if args.direct else "") + (f" --tasks {args.tasks}" if args.tasks != ",".join(TASKS) else "")
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for pad in ([True, False] if args.direct else [True]):
                r = run_one(task, pad, args.steps, args.eval_size, Path(tmp), args.threads)
                print(json.dumps(r), flush=True)
                results.append(r)
                write_results(out, command, args, results)  # after every run: a cut-short run keeps what it measured


def write_results(out: Path, command: str, args, results: list[dict]) -> None:
    out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=2))
    lines = [f"# SFT learnability of the procedural tasks (tiny:1m, {args.steps} steps, batch 64, {args.threads} CPU threads)", "",
             f"Command: `{command}`", "",
             "Seconds are wall time on a shared 2-core VM with many other jobs running: not a speed measurement.", "",
             "| task | scratchpad | held-out greedy accuracy | mean completion length | seconds |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {'yes' if r['scratchpad'] else 'no'} | {r['accuracy']:.3f} (n={r['eval_n']}) "
                     f"| {r['completion_len']:.1f} | {r['seconds']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for j, pad in enumerate([True, False] if args.direct else [True]):
        acc = [next((r["accuracy"] for r in results if r["task"] == t and r["scratchpad"] == pad), 0.0) for t in tasks]
        ax.bar([i + 0.4 * j for i in range(len(tasks))], acc, width=0.4, label="scratchpad" if pad else "answer only")
    ax.set_xticks([i + (0.2 if args.direct else 0) for i in range(len(tasks))], tasks)
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"tiny:1m, SFT {args.steps} steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)

if __name__ == "__main__":
    main()
