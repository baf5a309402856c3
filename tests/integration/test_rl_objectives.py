"""Every RL objective runs end to end on a tiny model, and bad input is handled: a verifier that raises or returns
NaN, an empty completion, a prompt longer than the context."""

import math

import pytest
import torch

from mentor import verifiers
from mentor.config import load_config
from mentor.objectives import OBJECTIVES
from mentor.rl import collate_rollouts
from mentor.runs import read_jsonl
from mentor.train import train
from mentor.types import Rollout

BASE = ["model.path=tiny:100k", "data.task=add", "data.task_args={digits: 1}", "data.num_train=128", "data.num_eval=8",
        "optim.lr=1e-3", "optim.batch_size=4", "optim.micro_batch_size=8", "sampling.max_new_tokens=10", "eval.every=0",
        "run.progress=false", "run.steps=2"]


@pytest.mark.parametrize("algo", [a for a, o in OBJECTIVES.items() if not o.distill])
def test_objective_runs(tmp_path, monkeypatch, algo):
    # A random tiny model never solves the task; reward odd-length completions so groups carry signal.
    monkeypatch.setitem(verifiers.VERIFIERS, "task", lambda completion, prompt: float(len(completion) % 2))
    extra = ["rl.ppo_epochs=2", "rl.minibatches=2"] if algo in ("grpo", "lpo_fwd") else []
    train(load_config(None, BASE + [f"algo={algo}", "rl.group_size=4", f"run.out_dir={tmp_path / algo}"] + extra))
    rec = read_jsonl(tmp_path / algo / "metrics.jsonl")[-1]
    assert rec["step"] == 2 and math.isfinite(rec["loss"]) and math.isfinite(rec["grad_norm"])
    assert 0.0 <= rec["zero_variance_groups"] <= 1.0 and rec["time/sample"] > 0 and rec["time/learn"] > 0
    if algo == "dapo":
        assert rec["dynamic/rounds"] >= 1 and rec["dynamic/rollouts_spent"] >= 16


def test_verifier_that_raises_or_returns_nan_scores_zero_and_is_counted(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}

    def flaky(completion, prompt):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise RuntimeError("verifier bug")
        return float("nan") if calls["n"] % 3 == 1 else 1.0

    monkeypatch.setitem(verifiers.VERIFIERS, "task", flaky)
    train(load_config(None, BASE + ["algo=grpo", "rl.group_size=4", f"run.out_dir={tmp_path / 'r'}"]))
    recs = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    # of every 3 calls one raises and one is NaN: both score 0; only the third (1.0) counts as a reward
    assert recs[-1]["reward/errors"] == sum(1 for i in range(1, 33) if i % 3 != 2)
    # the end-of-run evaluation meets the same verifier: errors score 0 and are counted, the run finishes
    assert recs[-1]["eval/verifier_errors"] > 0 and (tmp_path / "r" / "final").exists()
    assert all(0.0 <= r["reward/mean"] <= 1.0 for r in recs if "reward/mean" in r)
    out = capsys.readouterr().out
    assert "raised on prompt" in out and "returned nan" in out


def test_empty_completion_carries_no_loss():
    r_empty = Rollout("a", (5, 6), (), (), "stop")
    r_full = Rollout("b", (5,), (7, 8, 1), (-1.0, -2.0, -0.5), "stop")
    b = collate_rollouts([r_empty, r_full], 0, "cpu")
    assert b.loss_mask.tolist() == [[0, 0, 0], [1, 1, 1]]
    assert b.extras["sampler_logprobs"][1].tolist() == [-1.0, -2.0, -0.5]


def test_prompts_longer_than_the_context_are_dropped_with_a_log_line(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    rows = [{"prompt": "1+1=", "answer": "2"}] * 7 + [{"prompt": "9" * 2000 + "+1=", "answer": "x"}]
    data.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    train(load_config(None, [b for b in BASE if not b.startswith("data.task")] +
                      ["algo=grpo", "rl.group_size=2", "data.task=null", f"data.path={data}", "data.num_eval=0",
                       f"run.out_dir={tmp_path / 'r'}", "run.steps=1"]))
    assert "dropped 1 of" in capsys.readouterr().out


@pytest.mark.parametrize("estimator", ["topk", "full"])
def test_direct_distillation_estimators_run(tmp_path, estimator):
    from mentor.models import build_tiny_model, build_tokenizer, save_model

    tok = build_tokenizer()
    teacher = save_model(build_tiny_model(tok, "100k", seed=5), tok, tmp_path / "teacher")
    train(load_config(None, BASE + ["algo=opd", f"distill.teacher={teacher}", f"distill.estimator={estimator}",
                                    "distill.topk=8", f"run.out_dir={tmp_path / 'r'}"]))
    rec = read_jsonl(tmp_path / "r" / "metrics.jsonl")[-1]
    assert rec["distill_loss"] > 0 and math.isfinite(rec["grad_norm"])


def test_code_rewards_are_verified_in_the_sandbox_pool(tmp_path, monkeypatch):
    """GRPO on the code fixture: every completion is scored by the sandboxed verifier in one parallel batch."""
    import mentor.verifiers.code as code

    calls = []
    real = code.score_batch
    monkeypatch.setattr(code, "score_batch", lambda c, p, workers=None: calls.append(len(c)) or real(c, p, workers=2))
    fixture = str(code.fixture_path())
    train(load_config(None, [b for b in BASE if not b.startswith("data.task")] +
                      ["algo=grpo", "rl.group_size=2", "data.task=null", f"data.path={fixture}", "data.verifier=code",
                       "data.num_eval=0", "optim.batch_size=2", f"run.out_dir={tmp_path / 'r'}", "run.steps=1"]))
    assert calls == [4]  # 2 prompts x 2 completions, one batch
    rec = read_jsonl(tmp_path / "r" / "metrics.jsonl")[-1]
    assert rec["reward/mean"] == 0.0 and rec["reward/errors"] == 0  # a random model writes no passing program
