"""The settings mapping of benchmarks/vs_trl.py: TRL's `GRPOTrainer` and mentor's `grpo` compute the same thing.

On one batch that TRL itself generates (8 prompts × G = 8, a 100k-parameter model, 12 new tokens), mentor's
`group_advantages` reproduces TRL's advantages, and mentor's loss (the benchmark's mentor config) has the same
value (0 on-policy: the group advantages sum to zero and the ratio is 1) and the same gradient as TRL's
`loss_type="grpo"` loss. The benchmark harness then runs its interleaved loop for one timed step per side.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import vs_trl  # noqa: E402

from mentor import losses  # noqa: E402
from mentor.models import build_tiny_model, build_tokenizer, save_model  # noqa: E402
from mentor.rl import collate_rollouts  # noqa: E402
from mentor.tasks import make_prompts  # noqa: E402
from mentor.types import Rollout  # noqa: E402

L = 12  # max new tokens


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    tok = build_tokenizer()
    return save_model(build_tiny_model(tok, "100k", seed=3), tok, tmp_path_factory.mktemp("vs_trl") / "model")


def digit_reward(prompts, completions, **_):
    """A reward that varies within groups even for a random model: 1 if the completion holds a digit."""
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def test_trl_batch_has_same_advantages_loss_and_gradient_in_mentor(model_path, tmp_path):
    prompts = make_prompts("add", 8, 0, digits=3)  # all 8 characters long: no left padding on TRL's side
    args = vs_trl.trl_args(L, 3e-5, 0, max_steps=1, out_dir=tmp_path / "trl")
    assert (args.generation_batch_size, args.steps_per_generation) == (64, 1)  # one generation per optimizer step
    rewards: list[float] = []
    trainer = vs_trl.build_trl(model_path, prompts, args, {},
                               reward_func=lambda **kw: rewards.extend(r := digit_reward(**kw)) or r)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer loop, which this test bypasses
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions([{"prompt": p.text} for p in prompts for _ in range(8)])
    rewards_BG = torch.tensor(rewards).view(8, 8)
    assert 0 < rewards_BG.sum() < 64, "the test needs rewards that vary"

    # advantages: (R - mean_G) / (std_G(ddof=1) + 1e-4), the benchmark's rl.adv_eps
    adv = losses.group_advantages(rewards_BG, "grpo", std_ddof=1, eps=1e-4).reshape(-1)
    torch.testing.assert_close(adv, batch["advantages"], rtol=0, atol=1e-6)

    trainer.model.zero_grad()
    trl_loss = trainer.compute_loss(trainer.model, batch)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}

    stepper, _ = vs_trl.build_mentor(vs_trl.mentor_overrides(model_path, L, 3e-5, 0, tmp_path / "mentor"))
    rollouts = []
    for i in range(64):
        p_ids = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
        c_ids = batch["completion_ids"][i][batch["completion_mask"][i].bool()].tolist()
        rollouts.append(Rollout(f"p{i // 8}", tuple(p_ids), tuple(c_ids), (0.0,) * len(c_ids), "stop"))
    mb = collate_rollouts(rollouts, stepper.tokenizer.pad_token_id, "cpu")
    mb.extras["sampler_logprobs"] = stepper._logprobs_no_grad(stepper.model, mb)  # exact sampler: TIS weight 1
    mb.advantages = adv
    normaliser = stepper._normaliser(mb, 8)
    assert normaliser == 64  # seq_mean_token_mean divides by the number of sequences
    stepper.model.train()
    stepper.model.zero_grad()
    mentor_loss, _ = stepper._loss(stepper.model, mb, normaliser)
    mentor_loss.backward()

    # on-policy, first iteration: Σ_i A_i / N = 0 exactly in exact arithmetic; float rounding of 64 terms ~1e-8
    assert abs(float(trl_loss.detach())) < 1e-7 and abs(float(mentor_loss.detach())) < 1e-7
    largest = max(float(g.abs().max()) for g in trl_grads.values())
    assert largest > 1e-3  # a real gradient, not all zeros
    for n, p in stepper.model.named_parameters():
        torch.testing.assert_close(p.grad, trl_grads[n], rtol=1e-5, atol=1e-7, msg=lambda m: f"{n}: {m}")


def test_benchmark_loop_runs_one_timed_step_per_side(model_path, tmp_path):
    res = vs_trl.run_setting(model_path, 8, lr=3e-5, seed=0, warmup=1, rounds=1, block=1, work=tmp_path)
    for side in ("mentor", "trl"):
        (row,) = res[f"{side}_steps"]
        assert 64 <= row["completion_tokens"] <= 64 * 8  # 64 completions of 1..8 tokens
        assert row["seconds"] > 0 and row["sample"] > 0 and row["learn"] > 0
        assert res[side]["steps"] == 1
    assert res["ratio"]["per_round"] == [res["trl_steps"][0]["seconds"] / res["mentor_steps"][0]["seconds"]]
