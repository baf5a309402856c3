"""Seconds-long GRPO runs of `mentor train` with the learning selectors: they train, checkpoint their state, and
a run resumed from a mid-run checkpoint selects exactly the prompts the uninterrupted run selected."""

import shutil

import pytest

from mentor.cli import main
from mentor.config import load_config
from mentor.runs import read_jsonl
from mentor.train import train

GRPO = ["algo=grpo", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}", "data.num_train=128",
        "data.num_eval=8", "optim.lr=1e-3", "optim.batch_size=4", "optim.micro_batch_size=16", "sampling.max_new_tokens=12",
        "rl.group_size=4", "eval.every=0", "run.progress=false", "run.samples_per_step=4", "run.steps=4", "run.save_every=2"]
SELECTORS = {
    "mopps": ["rl.selector=mopps", "rl.selector_args={ts_ratio: 4}"],
    "gps": ["rl.selector=gps", "rl.selector_args={dim: 2048, hidden: 32, history_dim: 8}"],
}


@pytest.mark.parametrize("name", list(SELECTORS))
def test_learning_selector_run_resumes_with_identical_selections(tmp_path, name):
    ref = tmp_path / "ref"
    train(load_config(None, GRPO + SELECTORS[name] + [f"run.out_dir={ref}"]))
    samples = read_jsonl(ref / "samples.jsonl")
    assert sorted({s["step"] for s in samples}) == [1, 2, 3, 4]

    resumed = tmp_path / "resumed"
    shutil.copytree(ref, resumed)
    shutil.rmtree(resumed / "ckpt" / "step_4")  # resume from step 2: steps 3 and 4 run again
    assert main(["train", "--resume", str(resumed)]) == 0
    prompts = lambda d: [(s["step"], s["prompt"]) for s in read_jsonl(d / "samples.jsonl")]
    assert prompts(resumed) == prompts(ref)
