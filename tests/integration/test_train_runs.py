"""End-to-end runs of `mentor train` on tiny models: run-directory contents, errors, and bit-for-bit resume
after a SIGKILL in the middle of a checkpoint write."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mentor.cli import main
from mentor.config import load_config
from mentor.runs import read_jsonl
from mentor.train import train

SFT = ["algo=sft", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 2}", "data.num_train=512",
       "data.num_eval=16", "optim.lr=3e-3", "optim.batch_size=16", "optim.micro_batch_size=8", "sampling.max_new_tokens=24",
       "eval.every=4", "eval.size=16", "run.progress=false"]
GRPO = ["algo=grpo", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}", "data.num_train=256",
        "data.num_eval=8", "optim.lr=1e-3", "optim.batch_size=4", "optim.micro_batch_size=16", "sampling.max_new_tokens=12",
        "rl.group_size=4", "eval.every=4", "eval.size=8", "run.progress=false"]
GOPD = ["algo=g_opd", "distill.reward_scale=1.25", "model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}",
        "data.num_train=256", "data.num_eval=8", "optim.lr=1e-3", "optim.batch_size=8", "optim.micro_batch_size=16",
        "sampling.max_new_tokens=12", "eval.every=4", "eval.size=8", "run.progress=false"]


def test_sft_run_directory(tmp_path):
    out = tmp_path / "run"
    train(load_config(None, SFT + [f"run.out_dir={out}", "run.steps=8", "run.save_every=4"]))
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(0, 9))
    assert {"loss", "grad_norm", "lr", "tokens_per_s"} <= set(records[1])
    assert "eval/accuracy" in records[0] and "eval/accuracy" in records[8]
    assert (out / "config.yaml").exists() and (out / "report.md").exists() and (out / "plots" / "loss.png").exists()
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step_4", "step_8"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "final")
    assert tok.decode(tok("12+34=", add_special_tokens=False)["input_ids"]) == "12+34="
    AutoModelForCausalLM.from_pretrained(out / "final")
    assert load_config(out / "config.yaml").optim.lr == 3e-3  # the resolved config reloads


def test_existing_run_needs_resume(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(None, SFT + [f"run.out_dir={out}", "run.steps=2", "eval.every=0"])
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)


def test_cli_config_error_names_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo: sft\noptim: {lr: 1e-3, lrr: 2}\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "optim.'lrr'" in err or "optim.lrr" in err.replace("'", "")
    assert "allowed keys" in err


HANG = textwrap.dedent("""
    import sys, time, torch
    orig = torch.save
    def save(obj, path, *a, **k):
        orig(obj, path, *a, **k)
        if isinstance(obj, dict) and obj.get("step") == {step}:
            open({marker!r}, "w").close()   # the model and trainer state are written, the rename is not
            time.sleep(600)
    torch.save = save
    from mentor.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_opd_run_logs_teacher_metrics(tmp_path, teacher_dir):
    out = tmp_path / "opd"
    train(load_config(None, [x for x in GOPD if "reward_scale" not in x] + ["algo=opd", f"distill.teacher={teacher_dir}",
                                                                      f"run.out_dir={out}", "run.steps=3"]))
    records = read_jsonl(out / "metrics.jsonl")
    rec = records[1]
    assert rec["opd/reverse_kl"] > 0 and rec["opd/teacher_nll"] > 0 and 0 <= rec["opd/adv_positive"] <= 1
    # Cost accounting by hand (cumulative counters): student and teacher are both tiny:100k, whose non-embedding
    # parameter count (mentor.cost.flop_params) is N = 137,984 − 103 × 64 (tied embedding) = 131,392. Per sequence
    # token (prompt + completion): sampling forward 2N + training forward/backward 6N + teacher prefill 2N = 10N.
    N = 137_984 - 103 * 64
    steps = [r for r in records if "cost/flops" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    prev = dict.fromkeys(("cost/flops", "cost/tokens_sampled", "cost/tokens_teacher", "cost/tokens_trained"), 0)
    for r in steps:
        assert r["cost/flops"] - prev["cost/flops"] == pytest.approx(10 * N * r["tokens"])
        for role in ("sampled", "teacher", "trained"):
            assert r[f"cost/tokens_{role}"] - prev[f"cost/tokens_{role}"] == r["tokens"]
        assert r["cost/tokens_audit"] == 0
        prev = r
    assert not (out / "reference_init").exists()  # λ = 1 loads no reference


@pytest.mark.parametrize("recipe", [SFT, GRPO, GOPD], ids=["sft", "grpo", "g_opd"])
def test_sigkill_during_checkpoint_then_resume_matches_uninterrupted(tmp_path, recipe, teacher_dir, stable):
    steps = ["run.steps=8", "run.save_every=2"]
    if "algo=g_opd" in recipe:
        recipe = recipe + [f"distill.teacher={teacher_dir}"]
    ref = tmp_path / "ref"
    train(load_config(None, recipe + steps + [f"run.out_dir={ref}"]))

    killed = tmp_path / "killed"
    marker = tmp_path / "in_checkpoint_write"
    script = tmp_path / "hang.py"
    script.write_text(HANG.format(step=6, marker=str(marker)))
    proc = subprocess.Popen([sys.executable, str(script), "train", *recipe, *steps, f"run.out_dir={killed}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sorted(p.name for p in (killed / "ckpt").iterdir() if not p.name.startswith(".")) == ["step_2", "step_4"]

    assert main(["train", "--resume", str(killed)]) == 0
    assert stable(read_jsonl(killed / "metrics.jsonl")) == stable(read_jsonl(ref / "metrics.jsonl"))
    # the killed write's temp directory was removed on resume; only complete checkpoints remain
    assert sorted(p.name for p in (killed / "ckpt").iterdir()) == ["step_6", "step_8"]


def test_lora_and_gradient_checkpointing_run_resume_and_save_merged(tmp_path):
    out = tmp_path / "lora"
    lora = SFT + ["model.lora.enabled=true", "model.lora.r=4", "model.gradient_checkpointing=true", f"run.out_dir={out}",
                  "run.save_every=2", "eval.every=0"]
    train(load_config(None, lora + ["run.steps=2"]))
    assert (out / "ckpt" / "step_2" / "model" / "adapter_config.json").exists()
    cfg = load_config(out / "config.yaml", ["run.steps=4"])
    train(cfg, resume=True)
    assert (out / "final_adapter" / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out / "final")  # a plain HF model: adapters merged
    assert not any("lora" in n for n, _ in merged.named_parameters())
    losses_ = [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert len(losses_) == 4 and all(x == x for x in losses_)
