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
        "rl.group_size=4", "eval.every=0", "run.progress=false", "run.samples_per_step=4", "run.steps=2", "run.save_every=1",
        "run.threads=1"]
SELECTORS = {
    "mopps": ["rl.selector=mopps", "rl.selector_args={ts_ratio: 4}"],
    "gps": ["rl.selector=gps", "rl.selector_args={dim: 2048, hidden: 32, history_dim: 8}"],
}


@pytest.fixture(autouse=True)
def restore_threads():
    """`run.threads=1` (tiny model: one thread is fastest on a busy machine) sets a process-wide value; restore it."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", list(SELECTORS))
def test_learning_selector_run_resumes_with_identical_selections(tmp_path, name):
    ref = tmp_path / "ref"
    train(load_config(None, GRPO + SELECTORS[name] + [f"run.out_dir={ref}"]))
    samples = read_jsonl(ref / "samples.jsonl")
    assert sorted({s["step"] for s in samples}) == [1, 2]

    resumed = tmp_path / "resumed"
    shutil.copytree(ref, resumed)
    shutil.rmtree(resumed / "ckpt" / "step_2")  # resume from step 1: step 2 runs again
    assert main(["train", "--resume", str(resumed)]) == 0
    prompts = lambda d: [(s["step"], s["prompt"]) for s in read_jsonl(d / "samples.jsonl")]
    assert prompts(resumed) == prompts(ref)


def test_gps_checkpoint_predictor_and_test_time_allocation(tmp_path):
    import numpy as np
    import torch

    from mentor.models import load_model, load_tokenizer
    from mentor.selection import GPS
    from mentor.selection.allocate import allocate_and_eval, load_predictor
    from mentor.train import load_prompts

    out = tmp_path / "run"
    cfg = load_config(None, GRPO + SELECTORS["gps"] + [f"run.out_dir={out}", "run.steps=2"])
    train(cfg)
    args = cfg.rl.selector_args
    pred = load_predictor(out / "ckpt" / "step_2", args)
    # the same predictions as the selector rebuilt over the run's whole pool with its full state
    train_prompts, held = load_prompts(cfg)
    full = GPS(train_prompts, args=args)
    full.load_state_dict(torch.load(out / "ckpt" / "step_2" / "trainer.pt", weights_only=False)["stepper"]["selector"])
    np.testing.assert_allclose(pred.predict(held), full.predict(held), atol=1e-6)

    tok = load_tokenizer(str(out / "final"))
    model = load_model(str(out / "final"), tokenizer=tok)
    res = allocate_and_eval(model, tok, held[:4], 10, pred, max_new_tokens=12)
    assert res["uniform"]["samples"] == res["predicted"]["samples"] == 10
    assert sum(b["prompts"] for b in res["predicted"]["bins"].values()) == 4
    with pytest.raises(ValueError, match="no checkpoint"):
        load_predictor(tmp_path / "nowhere")


def test_eval_allocate_cli(tmp_path, capsys):
    import json

    from mentor.cli import main

    out = tmp_path / "run"
    train(load_config(None, GRPO + SELECTORS["gps"] + [f"run.out_dir={out}", "run.steps=2"]))
    assert main(["eval", str(out / "final"), "--task", "add", "--task-args", "digits=1", "--n", "4", "--budget", "2",
                 "--max-new-tokens", "8", "--allocate", f"gps:{out / 'ckpt' / 'step_2'}", "--out", str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "allocation.json").read_text())
    assert res["uniform"]["samples"] == res["predicted"]["samples"] == 8  # 2 per prompt on average, 4 prompts
