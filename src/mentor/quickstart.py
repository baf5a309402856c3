"""`mentor quickstart`: the embedded default run, on CPU in minutes, with nothing downloaded.

Stage 1 builds a ~1M-parameter Llama-architecture model and a character tokenizer locally, and trains it by
SFT on 3-digit addition with a per-digit scratchpad; it is evaluated greedily on held-out problems and the
report (plots + Markdown) is written. Each stage is an ordinary `mentor train` recipe, printed so that it can
be rerun or edited.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import load_config


def sft_recipe(out: Path, fast: bool) -> list[str]:
    return [
        "algo=sft", f"run.out_dir={out / 'sft'}", "run.seed=0", f"run.steps={15 if fast else 500}",
        f"run.save_every={0 if fast else 250}", "model.path=tiny:1m", "data.task=add", "data.task_args={digits: 3}",
        "optim.lr=2e-3", "optim.warmup_steps=20", "optim.schedule=cosine", "optim.min_lr_ratio=0.05",
        "optim.batch_size=64", "optim.micro_batch_size=64", "sampling.max_new_tokens=48",
        f"eval.every={5 if fast else 100}", f"eval.size={32 if fast else 256}",
    ]


def quickstart(out: str | Path = "runs/quickstart", fast: bool = False) -> dict[str, Path]:
    import shutil

    from .runs import read_jsonl
    from .train import train

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    overrides = sft_recipe(out, fast)
    print("mentor quickstart — stage 1: SFT of a tiny model on 3-digit addition\n  mentor train " + " ".join(overrides[1:]) + " algo=sft")
    sft_dir = train(load_config(None, overrides))
    acc = [r["eval/accuracy"] for r in read_jsonl(sft_dir / "metrics.jsonl") if "eval/accuracy" in r]
    print(f"\nSFT: held-out greedy accuracy {acc[0]:.1%} → {acc[-1]:.1%} in {time.perf_counter() - t0:.0f} s")
    print(f"  run directory : {sft_dir}\n  final model   : {sft_dir / 'final'}\n  report        : {sft_dir / 'report.md'}")
    return {"sft": sft_dir}
