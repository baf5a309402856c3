"""Run-wide trained models shared by the slow tier: one SFT run of a tiny model on 3-digit addition gives both a
strong teacher (its final weights) and a deliberately weak checkpoint (an early one), so the whole tier trains the
expensive model once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentor.config import load_config
from mentor.runs import read_jsonl
from mentor.train import train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sft_add_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("slow") / "sft-add"
    train(load_config(ROOT / "configs" / "sft-add.yaml", [f"run.out_dir={out}", "run.save_every=25", "run.keep_checkpoints=0",
                                                         "eval.every=25", "run.progress=false"]))
    return out


@pytest.fixture(scope="session")
def weak_checkpoint(sft_add_run) -> tuple[Path, float]:
    """The checkpoint whose held-out greedy accuracy is closest to 30% within [15%, 45%]: a weak but not hopeless
    start (this run's accuracy climbs from ~5% to ~65% within ~150 steps, so checkpoints are 25 steps apart)."""
    found = [(abs(r["eval/accuracy"] - 0.30), r["step"], r["eval/accuracy"]) for r in read_jsonl(sft_add_run / "metrics.jsonl")
             if 0.15 <= r.get("eval/accuracy", -1) <= 0.45 and (sft_add_run / "ckpt" / f"step_{r['step']}").exists()]
    if not found:
        raise AssertionError("no SFT checkpoint between 15% and 45% accuracy: " + str(
            [(r["step"], r["eval/accuracy"]) for r in read_jsonl(sft_add_run / "metrics.jsonl") if "eval/accuracy" in r]))
    _, step, acc = min(found)
    return sft_add_run / "ckpt" / f"step_{step}" / "model", acc
