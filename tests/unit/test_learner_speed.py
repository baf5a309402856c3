"""The learner's speed paths change no numbers: length-planned micro-batches (`rl.length_buckets`), the
entropy-as-metric backward of `gather_logprobs`, the fused AdamW of `make_optimizer`, and the summed
`pg_loss` metric of `backward_step`.

The stepper tests run `RLStepper._learn` on a hand-built batch with a 100k-parameter Llama in float64 and plain
SGD at lr 1 (so the weight change is exactly −gradient): one micro-batch of all rows and the most finely split
plan must give the same step."""

from __future__ import annotations

import pytest
import torch

from mentor.config import OptimConfig, load_config
from mentor.losses import gather_logprobs
from mentor.models import build_tiny_model
from mentor.rl import RLStepper, collate_rollouts, length_buckets
from mentor.tasks import make_prompts
from mentor.train import backward_step, make_optimizer
from mentor.types import Rollout, TrainBatch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- the planner

def test_length_buckets_splits_when_padding_saved_exceeds_the_overhead():
    # rows 10, 10, 2, 2 (max 4 rows). Overhead 5: one micro-batch costs 4·10 + 5 = 45; {10,10}{2,2} costs
    # 2·10 + 5 + 2·2 + 5 = 34; three or four micro-batches cost more (≥ 20 + 4 + 15 = 39).
    assert length_buckets([10, 2, 10, 2], 1, 4, 5) == [[0, 2], [1, 3]]
    # overhead 20: one micro-batch 60 < 20 + 20 + 4 + 20 = 64
    assert length_buckets([10, 2, 10, 2], 1, 4, 20) == [[0, 2, 1, 3]]


def test_length_buckets_respects_max_rows_and_sorts_longest_first():
    # four rows of 5, at most 2 per micro-batch, overhead 1: two micro-batches (2·5 + 1 each), in index order
    assert length_buckets([5, 5, 5, 5], 1, 2, 1) == [[0, 1], [2, 3]]
    # a 1-row cap: one row per micro-batch, longest first, ties by index
    assert length_buckets([3, 7, 3], 1, 1, 0) == [[1], [0], [2]]


def test_length_buckets_keeps_units_whole():
    # units of 2 rows: (3, 9) (4, 4) (8, 8), longest 9, 4, 8 → sorted units 0, 2, 1; max 4 rows = 2 units,
    # overhead 10: {u0,u2}{u1} = 4·9 + 10 + 2·4 + 10 = 64; {u0}{u2,u1} = 2·9 + 10 + 4·8 + 10 = 70;
    # {u0}{u2}{u1} = 18 + 16 + 8 + 30 = 72; all three together exceed 4 rows.
    assert length_buckets([3, 9, 4, 4, 8, 8], 2, 4, 10) == [[0, 1, 4, 5], [2, 3]]
    # a unit larger than max_rows still forms one micro-batch
    assert length_buckets([1, 2, 3, 4], 4, 2, 0) == [[0, 1, 2, 3]]


def test_length_buckets_rejects_bad_arguments():
    with pytest.raises(ValueError, match="units of 2"):
        length_buckets([1, 2, 3], 2, 4, 0)
    with pytest.raises(ValueError, match="optim.micro_batch_overhead_tokens"):
        length_buckets([1, 2], 1, 4, -1)


# ----------------------------------------------------------------------------- gather_logprobs backward

def test_unused_entropy_output_leaves_the_logprob_gradient_exact():
    # 2-token vocabulary, logits (0, 0), token 0: π = (½, ½), ∂ℓ/∂z = (1 − ½, −½) = (½, −½). The entropy
    # output, used only as a metric (no gradient flows into it), must not change that.
    z = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    lp, ent = gather_logprobs(z, torch.zeros(1, 1, dtype=torch.long), with_entropy=True)
    torch.testing.assert_close(ent, torch.tensor([[torch.log(torch.tensor(2.0)).item()]], dtype=torch.float64))
    lp.sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([[[0.5, -0.5]]], dtype=torch.float64), atol=1e-15, rtol=0)


def test_entropy_only_gradient_without_logprob_gradient():
    # H(z) for 2 tokens at logits (a, 0): ∂H/∂a = −π₀π₁·a. At a = log 3: π = (¾, ¼), ∂H/∂a = −(3/16)·log 3;
    # ∂H/∂z₁ = +(3/16)·log 3 (softmax gradients sum to zero). The log-prob output carries no gradient here.
    a = torch.log(torch.tensor(3.0, dtype=torch.float64))
    z = torch.stack([a, torch.zeros((), dtype=torch.float64)]).view(1, 1, 2).requires_grad_(True)
    _, ent = gather_logprobs(z, torch.zeros(1, 1, dtype=torch.long), with_entropy=True)
    ent.sum().backward()
    g = 3 / 16 * a.item()
    torch.testing.assert_close(z.grad, torch.tensor([[[-g, g]]], dtype=torch.float64), atol=1e-15, rtol=0)


# ----------------------------------------------------------------------------- optimizer

def test_fused_adamw_takes_the_reference_adamw_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    ref = torch.nn.Linear(5, 3)
    ref.load_state_dict(model.state_dict())
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    fused = make_optimizer(model, cfg)
    assert fused.defaults["fused"] is True
    plain = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    x = torch.randn(4, 5)
    for _ in range(3):
        for m, opt in ((model, fused), (ref, plain)):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- the stepper

G = 4


def make_stepper(tokenizer, algo: str, overhead: int, micro_batch_size: int = 8) -> RLStepper:
    cfg = load_config(None, [
        f"algo={algo}", "model.path=tiny:100k", "run.out_dir=/nonexistent", "data.task=add", "data.task_args={digits: 2}",
        "optim.batch_size=2", f"optim.micro_batch_size={micro_batch_size}", f"optim.micro_batch_overhead_tokens={overhead}",
        "optim.grad_clip=0", f"rl.group_size={G}", "sampling.max_new_tokens=8"]
        + (["rl.aggregation=seq_mean_token_mean"] if algo == "grpo" else []))
    model = build_tiny_model(tokenizer, "100k", seed=1).double()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return RLStepper(cfg, model, tokenizer, opt, sched, make_prompts("add", 4, 0, digits=2), torch.device("cpu"))


def make_batch(tokenizer) -> tuple[TrainBatch, torch.Tensor]:
    """2 groups × 4 rows, prompts of 3 and 5 tokens, completions of 1..8 tokens (row 5 has none of its tokens
    in the loss, as after the overlong filter); advantages that do not sum to zero, so pg_loss ≠ 0. The
    sampler's log-probs are filled in by `learn`."""
    g = torch.Generator().manual_seed(0)
    prompt_lens, comp_lens = [3, 3, 3, 3, 5, 5, 5, 5], [1, 8, 2, 5, 7, 3, 6, 2]
    rollouts = []
    for i, (p, c) in enumerate(zip(prompt_lens, comp_lens)):
        ids = torch.randint(3, 40, (p + c,), generator=g).tolist()
        rollouts.append(Rollout(f"p{i // G}", tuple(ids[:p]), tuple(ids[p:]), tuple([-1.0] * c), "stop"))
    batch = collate_rollouts(rollouts, tokenizer.pad_token_id, "cpu")
    batch.loss_mask[5] = 0.0
    batch.num_loss_tokens = int(batch.loss_mask.sum())
    batch.loss_mask = batch.loss_mask.double()
    A = torch.tensor([1.0, -0.5, 2.0, 0.25, -1.0, 3.0, 0.5, 0.75], dtype=torch.float64)
    batch.advantages = A
    batch.extras["rewards"] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    return batch, A


def learn(stepper: RLStepper, batch: TrainBatch) -> tuple[dict, list[torch.Tensor], list[int]]:
    """One `_learn` step, on-policy (the sampler's log-probs are the model's own, so ρ = 1 and the TIS weight is
    1); returns its metrics, the weight change (= −gradient under SGD at lr 1) and the row count of every
    micro-batch the loss saw."""
    batch.extras["sampler_logprobs"] = stepper._logprobs_no_grad(stepper.model, batch)
    before = [p.detach().clone() for p in stepper.model.parameters()]
    sizes: list[int] = []
    inner = stepper._loss

    def counting(model, mb, normaliser):
        sizes.append(mb.input_ids.shape[0])
        return inner(model, mb, normaliser)

    stepper._loss = counting
    m = stepper._learn(batch, 2, G)
    return m, [p.detach() - b for p, b in zip(stepper.model.parameters(), before)], sizes


@pytest.mark.parametrize("algo", ["grpo", "lpo_fwd"])
def test_split_plan_gives_the_one_micro_batch_step(tokenizer, algo):
    batch, _ = make_batch(tokenizer)
    m1, d1, sizes1 = learn(make_stepper(tokenizer, algo, overhead=10**6), batch)
    m2, d2, sizes2 = learn(make_stepper(tokenizer, algo, overhead=0), batch)
    if algo == "grpo":  # rows are planned one by one; row 5 (no loss tokens) is never run
        assert sizes1 == [7] and len(sizes2) > 1 and sum(sizes2) == 7
    else:  # LPO couples a group's rows: whole groups only
        assert sizes1 == [8] and sizes2 == [4, 4]
    assert max(d.abs().max() for d in d1) > 1e-3  # a real step
    for a, b in zip(d1, d2):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-12)


def test_pg_loss_metric_is_the_batch_value_under_any_plan(tokenizer):
    # On-policy first step (ℓold = ℓθ, ρ = 1, no clipping, kl 0, entropy_coef 0) with seq_mean_token_mean:
    # pg_loss = −Σ_i A_i·(1/|y_i|)·Σ_t 1 / N_seq = −Σ_i A_i / N_seq over the 7 rows with loss tokens
    # (row 5 is dropped): −(1 − 0.5 + 2 + 0.25 − 1 + 0.5 + 0.75) / 7 = −3/7.
    batch, _ = make_batch(tokenizer)
    for overhead in (0, 10**6):
        m, _, _ = learn(make_stepper(tokenizer, "grpo", overhead), batch)
        assert m["pg_loss"] == pytest.approx(-3 / 7, abs=1e-12)
        assert m["loss"] == pytest.approx(-3 / 7, abs=1e-12)


def test_backward_step_sums_summed_metrics_and_averages_the_rest():
    # two micro-batches of weight 1 and 3 reporting a = 2 and 4 (weighted mean (2 + 12)/4 = 3.5) and summed
    # shares s = 0.25 and 0.5 (sum 0.75)
    w = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    reports = iter([(1, 2.0, 0.25), (3, 4.0, 0.5)])

    def loss_fn(model, mb, normaliser):
        weight, a, s = next(reports)
        return w * 1.0, {"a": a, "_weight": weight, "_summed": {"s": s}}

    module = torch.nn.Module()
    module.w = w
    m = backward_step(module, opt, sched, [TrainBatch(None, None, None)] * 2, loss_fn, 1.0, 0.0)
    assert m["a"] == pytest.approx(3.5, abs=1e-12)
    assert m["s"] == pytest.approx(0.75, abs=1e-12)


def test_no_grad_logprobs_in_planned_micro_batches_equal_one_forward(tokenizer):
    # `_logprobs_no_grad` runs rows in length-planned micro-batches (overhead 0, at most 3 rows: several
    # forwards, rows out of order) and puts them back in place: the same values as one forward of all rows.
    stepper = make_stepper(tokenizer, "grpo", overhead=0, micro_batch_size=3)
    batch, _ = make_batch(tokenizer)
    batch.extras["sampler_logprobs"] = torch.zeros_like(batch.loss_mask)
    with torch.no_grad():
        logits = stepper.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        whole = gather_logprobs(logits, batch.input_ids[:, 1:])
    planned = stepper._logprobs_no_grad(stepper.model, batch)
    real = batch.attention_mask[:, 1:].bool()  # positions that predict a real token
    torch.testing.assert_close(planned[real], whole[real], atol=1e-12, rtol=0)
    assert (planned[~real] == 0).all()
