"""Composition-RL on a tiny model (specs/composition.md §4.2, issue 11): RL on original problems vs on compositions.

From one checkpoint (the tiny:1m 3-digit-addition SFT model, `--init`), an SFT on exact composed traces teaches
the model to *read* compositions (the compact style ``X=368+543;Y=X-474;514+Y=``: depth 1 and 2, plus a fraction
`--sft-d3-frac` of depth 3, 0 by default so that depth 3 stays unseen). From that common start, three GRPO continuations with mentor's own loop (same steps, lr,
batch, group size, max tokens):

- ``original``: GRPO on the original 3-digit addition pool;
- ``depth2``: `rl.transform: composition`, schedule [[0, 2]] (50 % depth 2 / 50 % original), `seeds: solved`;
- ``curriculum``: the same with the `pass_rate` curriculum 2 → 3 (window / min-steps scaled to the run length).

Evaluated greedily on held-out originals and held-out depth-2 / depth-3 compositions (chains built only from the
`eval` side of the partition, never trained on). Also logged: the fraction of informative (non-degenerate) groups
during the continuation.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/composition.py --init /tmp/cal/sft/ckpt/step_800/model \
        --work /tmp/comp3 --sft-steps 5000 --sft-lr 1e-3 --sft-schedule cosine --sft-rows 16000 --sft-orig-frac 0.3 \
        --rl-steps 150 --rl-batch 8 --group-size 8 --lr 1e-4 --eval-size 128 --seeds 0,1,2 --out <...>/composition_d3_unseen
    # composition.md: --work /tmp/comp4 --sft-steps 3000 --sft-d3-frac 0.05 --rl-steps 200 --lr 3e-5 (rest the same)

The init checkpoint is the quickstart-style SFT of tiny:1m on 3-digit addition (`mentor train configs/sft-add.yaml
model.path=tiny:1m`, 800 steps).

Writes benchmarks/results/composition.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

from mentor.config import load_config
from mentor.runs import read_jsonl
from mentor.tasks import make_prompts
from mentor.tasks.composition import ComposeConfig, CompositionConfig, compose_dataset, row_of

STYLE = {"compose": {"style": "compact"}}
MAX_NEW_TOKENS = 256  # a depth-3 trace with 4-digit intermediates is ~210 characters
ARMS = {
    "original": None,
    "depth2": {**STYLE, "seeds": "solved", "solved_min_samples": 4, "curriculum": {"schedule": [[0, 2]]}},
    "curriculum": {**STYLE, "seeds": "solved", "solved_min_samples": 4,
                   "curriculum": {"kind": "pass_rate", "start_depth": 2, "max_depth": 3, "theta_up": 0.6,
                                  "window": 4, "min_steps": 6}},
}


def composed(pool, depth: int, n: int, seed: int):
    rows, _ = compose_dataset(pool, pool, depth, n, seed, CompositionConfig(compose=ComposeConfig(style="compact")))
    return rows


def eval_sets(n: int) -> dict:
    held = make_prompts("add", 3 * n, 1, "eval", digits=3)
    return {"original": held[:n], "depth2": composed(held, 2, n, 11), "depth3": composed(held, 3, n // 2, 12)}


def evaluate_all(model_dir: Path, sets: dict) -> dict:
    from mentor.evaluate import evaluate
    from mentor.models import load_model
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(str(model_dir))
    out = {}
    for name, prompts in sets.items():
        res = evaluate(model, tok, prompts, greedy=True, max_new_tokens=MAX_NEW_TOKENS, batch_size=64)
        out[name] = res.summary["accuracy"]
    return out


def sft_mixture(path: Path, n: int, orig_frac: float, d3_frac: float = 0.0) -> None:
    """n composed depth-2 rows plus originals and depth-3 rows making `orig_frac` and `d3_frac` of the file, shuffled."""
    train = make_prompts("add", 4 * n, 0, "train", digits=3)
    total = n / (1 - orig_frac - d3_frac)
    rows = train[: round(total * orig_frac)] + composed(train, 2, n, 5)
    if d3_frac > 0:
        rows += composed(train, 3, round(total * d3_frac), 6)
    random.Random(0).shuffle(rows)
    with path.open("w") as f:
        for p in rows:
            r = row_of(p)
            r.update(verifier="exact", completion=p.meta["trace"])
            r.pop("meta"), r.pop("provenance")
            f.write(json.dumps(r) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", default="/tmp/cal/sft/ckpt/step_800/model")
    ap.add_argument("--work", default="/tmp/composition_bench")
    ap.add_argument("--sft-steps", type=int, default=110)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--sft-d3-frac", type=float, default=0.0, help="fraction of depth-3 rows in the SFT mix (0: depth 3 unseen)")
    ap.add_argument("--sft-schedule", default="constant", help="SFT lr schedule (constant, cosine, ...)")
    ap.add_argument("--sft-orig-frac", type=float, default=0.25, help="fraction of original (depth-1) rows in the SFT mix")
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0], help="RL seeds, e.g. 0,1,2")
    ap.add_argument("--rl-steps", type=int, default=16)
    ap.add_argument("--rl-batch", type=int, default=4, help="prompts per GRPO step")
    ap.add_argument("--group-size", type=int, default=4, help="GRPO group size G")
    ap.add_argument("--sft-rows", type=int, default=2000, help="composed depth-2 rows in the SFT mix")
    ap.add_argument("--eval-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--out", default="benchmarks/results/composition")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from mentor.train import train

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    init = work / "init"
    if not init.exists():
        shutil.copytree(a.init, init)
    sets = eval_sets(a.eval_size)
    t0 = time.perf_counter()
    results: dict = {"args": vars(a), "eval_sizes": {k: len(v) for k, v in sets.items()}, "arms": {}}
    cached = work / f"init_eval_{a.eval_size}.json"  # the init model is fixed: evaluate it once per eval size
    if not cached.exists():
        cached.write_text(json.dumps(evaluate_all(init, sets)))
    results["init_eval"] = json.loads(cached.read_text())
    print("init", results["init_eval"], flush=True)

    sft_dir = work / "sft"
    if not (sft_dir / "final").exists():
        shutil.rmtree(sft_dir, ignore_errors=True)
        sft_mixture(work / "sft.jsonl", a.sft_rows, a.sft_orig_frac, a.sft_d3_frac)
        train(load_config(None, [
            "algo=sft", f"run.out_dir={sft_dir}", f"run.steps={a.sft_steps}", "run.save_every=0", "run.progress=false",
            "run.threads=1", f"model.path={init}", "data.task=null", f"data.path={work / 'sft.jsonl'}",
            "data.num_eval=0", f"optim.lr={a.sft_lr}", "optim.warmup_steps=10", f"optim.schedule={a.sft_schedule}",
            "optim.batch_size=16", "optim.micro_batch_size=16", f"sampling.max_new_tokens={MAX_NEW_TOKENS}", "eval.every=0"]))
    results["start_eval"] = evaluate_all(sft_dir / "final", sets)
    results["time/sft_s"] = time.perf_counter() - t0
    print("start", results["start_eval"], flush=True)

    for arm, targs in ARMS.items():
        runs = [rl_arm(a, work, sft_dir, sets, arm, targs, seed) for seed in a.seeds]
        results["arms"][arm] = {**mean_of(runs), "runs": runs}
        print(arm, results["arms"][arm]["eval"], f"informative={results['arms'][arm]['informative_groups']:.3f}", flush=True)
    results["time/total_s"] = time.perf_counter() - t0
    write(results, Path(a.out))


def rl_arm(a, work: Path, sft_dir: Path, sets: dict, arm: str, targs: dict | None, seed: int) -> dict:
    """One GRPO continuation from the common start, then its held-out evaluation and training statistics."""
    from mentor.train import train

    t1 = time.perf_counter()
    out = work / f"rl-{arm}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    over = ["algo=grpo", f"run.out_dir={out}", f"run.steps={a.rl_steps}", "run.save_every=0", "run.progress=false",
            "run.threads=1", f"run.seed={seed}", f"model.path={sft_dir / 'final'}", "data.task=add",
            "data.task_args={digits: 3}", "data.num_train=2000", "data.num_eval=0", f"optim.lr={a.lr}",
            "optim.schedule=constant", f"optim.batch_size={a.rl_batch}", "optim.micro_batch_size=32", "optim.grad_clip=1.0",
            "sampling.temperature=1.0", f"sampling.max_new_tokens={MAX_NEW_TOKENS}", f"rl.group_size={a.group_size}",
            "eval.every=0"]
    if targs is not None:
        over += ["rl.transform=composition", f"rl.transform_args={json.dumps(targs)}"]
    train(load_config(None, over))
    recs = [r for r in read_jsonl(out / "metrics.jsonl") if "zero_variance_groups" in r]
    return {"seed": seed, "eval": evaluate_all(out / "final", sets), "time_s": time.perf_counter() - t1,
            "informative_groups": 1.0 - sum(r["zero_variance_groups"] for r in recs) / len(recs),
            "train_accuracy": sum(r["accuracy"] for r in recs) / len(recs),
            "composed_fraction": sum(r.get("composition/fraction", 0.0) for r in recs) / len(recs),
            "max_depth_final": recs[-1].get("composition/max_depth", 1.0),
            "curve": [{k: r[k] for k in r if k in ("step", "accuracy", "zero_variance_groups")
                       or k.startswith("composition/")} for r in recs]}


def mean_of(runs: list[dict]) -> dict:
    """Mean over seeds of the evaluations and statistics, with the standard error of each evaluation."""
    n = len(runs)
    keys = runs[0]["eval"].keys()
    mean = {k: sum(r["eval"][k] for r in runs) / n for k in keys}
    se = {k: (sum((r["eval"][k] - mean[k]) ** 2 for r in runs) / max(n - 1, 1) / n) ** 0.5 for k in keys}
    return {"eval": mean, "eval_se": se, **{k: sum(r[k] for r in runs) / n for k in
                                            ("informative_groups", "train_accuracy", "composed_fraction", "time_s")}}


def write(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    a, s0 = results["args"], results["start_eval"]
    seeds = ",".join(str(x) for x in a["seeds"])
    lines = ["# Composition-RL on a tiny model (benchmarks/composition.py)", "",
             f"Command: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/composition.py --init <add-3 SFT checkpoint> "
             f"--sft-steps {a['sft_steps']} --sft-lr {a['sft_lr']} --sft-schedule {a['sft_schedule']} --sft-rows "
             f"{a['sft_rows']} --sft-orig-frac {a['sft_orig_frac']} --sft-d3-frac {a.get('sft_d3_frac', 0.0)} --rl-steps {a['rl_steps']} --rl-batch {a['rl_batch']} "
             f"--group-size {a['group_size']} --lr {a['lr']} --eval-size {a['eval_size']} --seeds {seeds}` (1 thread, "
             f"shared 2-core CPU; total {results['time/total_s']:.0f} s).", "",
             f"Held-out sets: {results['eval_sizes']} prompts (greedy accuracy; chains built only from held-out "
             "prompts). init = the 3-digit-addition SFT checkpoint; start = after SFT on composed traces (the common "
             f"start of every GRPO arm; {a.get('sft_d3_frac', 0.0):.0%} of the SFT rows at depth 3, the rest depth 1 and 2). "
             f"RL: mean ± standard error over seeds {seeds}.", "",
             "| model | original | depth 2 | depth 3 | Δ orig vs original-RL | Δ d2 | Δ d3 | informative groups | composed frac |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, ev in (("init", results["init_eval"]), ("start (SFT)", s0)):
        lines.append(f"| {name} | {ev['original']:.3f} | {ev['depth2']:.3f} | {ev['depth3']:.3f} | | | | | |")
    base = results["arms"]["original"]["eval"]
    for arm, r in results["arms"].items():
        ev, se = r["eval"], r["eval_se"]
        lines.append(f"| GRPO {arm} | {ev['original']:.3f} ± {se['original']:.3f} | {ev['depth2']:.3f} ± {se['depth2']:.3f} | "
                     f"{ev['depth3']:.3f} ± {se['depth3']:.3f} | {ev['original'] - base['original']:+.3f} | "
                     f"{ev['depth2'] - base['depth2']:+.3f} | {ev['depth3'] - base['depth3']:+.3f} | "
                     f"{r['informative_groups']:.3f} | {r['composed_fraction']:.2f} |")
    lines += ["", "Per seed (original / depth 2 / depth 3):", "", "| arm | " + " | ".join(f"seed {x}" for x in a["seeds"]) + " |",
              "|---|" + "---|" * len(a["seeds"])]
    for arm, r in results["arms"].items():
        lines.append(f"| {arm} | " + " | ".join(f"{x['eval']['original']:.3f} / {x['eval']['depth2']:.3f} / "
                                                 f"{x['eval']['depth3']:.3f}" for x in r["runs"]) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = ["init", "start"] + [f"GRPO {x}" for x in results["arms"]]
    evs = [results["init_eval"], s0] + [r["eval"] for r in results["arms"].values()]
    ses = [None, None] + [r["eval_se"] for r in results["arms"].values()]
    for i, key in enumerate(("original", "depth2", "depth3")):
        axes[0].bar([j + 0.27 * (i - 1) for j in range(len(names))], [e[key] for e in evs], 0.27, label=key,
                    yerr=[e[key] if e else 0.0 for e in ses])
    axes[0].set_xticks(range(len(names)), names, rotation=20)
    axes[0].set_ylabel("held-out greedy accuracy")
    axes[0].legend()
    for arm, r in results["arms"].items():
        curves = [[1 - c["zero_variance_groups"] for c in x["curve"]] for x in r["runs"]]
        steps = [c["step"] for c in r["runs"][0]["curve"]]
        axes[1].plot(steps, [sum(v) / len(v) for v in zip(*curves)], label=arm)
    axes[1].set_xlabel("GRPO step")
    axes[1].set_ylabel("informative groups (fraction, mean over seeds)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
