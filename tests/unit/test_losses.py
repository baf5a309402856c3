"""Hand-derived checks of mentor.losses: log-prob gathering, aggregation, group advantages, the clipped
policy loss, TIS, KL estimators (specs/grpo_family.md §4.1–4.2) and LPO (specs/lpo.md §4.1).

Every expected number is derived in the comment next to it; tolerances are atol=1e-6 (float64 where the
value is exact up to rounding)."""

import math
import statistics

import pytest
import torch

from mentor.losses import (
    aggregate,
    gather_logprobs,
    group_advantages,
    kl_estimate,
    loss_normaliser,
    lpo_loss,
    lpo_normaliser,
    lpo_target,
    lpo_weights,
    masked_mean,
    masked_sum,
    overlong_penalty,
    policy_loss,
    sequence_logratio,
    token_entropy,
)

F64 = torch.float64


def t64(*values):
    return torch.tensor(values, dtype=F64)


def s64(value):
    return torch.tensor(value, dtype=F64)


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64),
                               atol=atol, rtol=0)


# ============================================================================ gather_logprobs


def _reference_logprobs(logits, tokens, temperature=1.0):
    logp = torch.log_softmax(logits.to(F64) / temperature, dim=-1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 5, 6, 7, 100])
def test_gather_logprobs_equals_log_softmax_and_chunking_changes_nothing(chunk_size):
    # B=3, T=5: chunk sizes below T split sequences along time, above T group whole sequences; the value
    # and the gradient (of a weighted sum, so every position matters) must equal log_softmax + gather.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=F64, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 5), generator=g)
    weights = torch.randn(3, 5, generator=g, dtype=F64)
    lp, ent = gather_logprobs(logits, tokens, 0.7, chunk_size, with_entropy=True)
    ref_lp, ref_ent = _reference_logprobs(logits, tokens, 0.7)
    close(lp, ref_lp, atol=1e-12)
    close(ent, ref_ent, atol=1e-12)
    grad, = torch.autograd.grad((weights * lp).sum() + (weights * ent).sum(), logits)
    ref_grad, = torch.autograd.grad((weights * ref_lp).sum() + (weights * ref_ent).sum(), logits)
    close(grad, ref_grad, atol=1e-12)


def test_entropy_and_logprob_of_uniform_logits_are_log_v():
    # softmax of equal logits is uniform over V=8: log π = −ln 8 = −2.0794415, H = ln 8 = 2.0794415.
    logits = torch.full((2, 3, 8), 0.3, dtype=F64)
    lp, ent = gather_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), with_entropy=True)
    close(lp, torch.full((2, 3), -math.log(8)))
    close(ent, torch.full((2, 3), math.log(8)))
    close(token_entropy(logits), torch.full((2, 3), math.log(8)))


def test_gather_logprobs_on_sliced_non_contiguous_logits():
    # logits[:, :-1] (the usual shift) cannot be viewed as (B·T, V); values and gradients still match.
    g = torch.Generator().manual_seed(1)
    full = torch.randn(2, 6, 5, generator=g, dtype=F64, requires_grad=True)
    tokens = torch.randint(0, 5, (2, 5), generator=g)
    lp = gather_logprobs(full[:, :-1], tokens, chunk_size=2)
    ref, _ = _reference_logprobs(full[:, :-1], tokens)
    close(lp, ref, atol=1e-12)
    grad, = torch.autograd.grad(lp.sum(), full)
    ref_grad, = torch.autograd.grad(ref.sum(), full)
    close(grad, ref_grad, atol=1e-12)
    assert grad[:, -1].abs().max() == 0  # the last position's logits predict nothing here


def test_vocab_size_ignores_padded_embedding_rows():
    # Rows ≥ vocab_size (padding past the tokenizer) must not take probability mass: with 4 real ids and a
    # padded row of logit 100, log π(id 0) over the 4 real ids of logits (0,0,0,0) is −ln 4.
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 100.0]]], dtype=F64)
    lp, ent = gather_logprobs(logits, torch.tensor([[0]]), with_entropy=True, vocab_size=4)
    close(lp, [[-math.log(4)]])
    close(ent, [[math.log(4)]])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 4\)"):
        gather_logprobs(logits, torch.tensor([[4]]), vocab_size=4)
    # gradients: those of log_softmax over the first 4 columns, and exactly 0 on the padded rows
    g = torch.Generator().manual_seed(12)
    padded = torch.randn(2, 3, 6, generator=g, dtype=F64, requires_grad=True)
    tokens = torch.randint(0, 4, (2, 3), generator=g)
    lp, ent = gather_logprobs(padded, tokens, 1.5, 2, with_entropy=True, vocab_size=4)
    grad, = torch.autograd.grad(lp.sum() + 0.3 * ent.sum(), padded)
    ref_lp, ref_ent = _reference_logprobs(padded[..., :4], tokens, 1.5)
    ref_grad, = torch.autograd.grad(ref_lp.sum() + 0.3 * ref_ent.sum(), padded)
    close(grad, ref_grad, atol=1e-12)
    assert torch.equal(grad[..., 4:], torch.zeros(2, 3, 2, dtype=F64))


def test_masked_minus_inf_logits_give_finite_entropy_and_gradients():
    # logits (0, 0, −inf): π = (½, ½, 0), H = ln 2, and 0·log 0 must not turn into NaN in value or gradient.
    logits = torch.tensor([[[0.0, 0.0, float("-inf")]]], dtype=F64, requires_grad=True)
    lp, ent = gather_logprobs(logits, torch.tensor([[1]]), with_entropy=True)
    close(lp, [[-math.log(2)]])
    close(ent, [[math.log(2)]])
    grad, = torch.autograd.grad(lp.sum() + ent.sum(), logits)
    assert torch.isfinite(grad).all()


def test_low_precision_logits_are_computed_in_float32():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    tokens = torch.randint(0, 7, (2, 4), generator=torch.Generator().manual_seed(3))
    lp = gather_logprobs(logits, tokens)
    assert lp.dtype == torch.float32
    ref, _ = _reference_logprobs(logits.float(), tokens)
    close(lp.double(), ref, atol=1e-6)


def _bytes_saved_for_backward(fn, logits):
    """Bytes autograd keeps for backward in tensors that are not (views of) the logits themselves."""
    saved = []

    def pack(t):
        if t.untyped_storage().data_ptr() != logits.untyped_storage().data_ptr():
            saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved)


def test_gather_logprobs_keeps_no_vocabulary_sized_copy_for_backward():
    # B·T = 256 positions × V = 1000: one float32 copy of the logits is 1,024,000 bytes. The chunked,
    # checkpointed version keeps O(B·T) bytes; the naive log_softmax keeps at least one full copy (the
    # second assert shows this check can fail).
    logits = torch.randn(4, 64, 1000, requires_grad=True)
    tokens = torch.randint(0, 1000, (4, 64))
    full_copy = logits.numel() * 4
    chunked = _bytes_saved_for_backward(
        lambda: gather_logprobs(logits, tokens, 0.9, chunk_size=64, with_entropy=True), logits)
    naive = _bytes_saved_for_backward(
        lambda: torch.log_softmax(logits / 0.9, -1).gather(-1, tokens[..., None]), logits)
    assert chunked <= 64 * 256  # a few (B, T) tensors at most
    assert naive >= full_copy


def test_gather_logprobs_rejects_bad_input():
    logits = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match="tokens_BT.*shape"):
        gather_logprobs(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 5\)"):
        gather_logprobs(logits, torch.full((2, 3), 5))
    with pytest.raises(ValueError, match="temperature"):
        gather_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        gather_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), chunk_size=0)


# ============================================================================ masking and aggregation


def test_masked_sum_and_mean_ignore_masked_entries_even_nan():
    x = t64(1.0, 2.0, float("nan"), float("inf"))
    mask = t64(1.0, 1.0, 0.0, 0.0)
    close(masked_sum(x, mask), 3.0)
    close(masked_mean(x, mask), 1.5)  # 3 / 2 loss entries
    close(masked_mean(x, mask, normaliser=6.0), 0.5)  # explicit normaliser wins
    close(masked_mean(x, torch.zeros(4, dtype=F64)), 0.0)  # empty mask: 0, not NaN
    with pytest.raises(ValueError, match="shape"):
        masked_sum(x, mask[:3])


# Spec table: seq A has token losses (2, 2), seq B (1, 1, 1, 1) (padded to T=4).
LOSS_AB = t64(2, 2, 0, 0, 1, 1, 1, 1).view(2, 4)
MASK_AB = t64(1, 1, 0, 0, 1, 1, 1, 1).view(2, 4)
AGG_EXPECTED = {
    "token_mean": 8 / 6,  # (2+2+1+1+1+1)/6 tokens = 1.333333
    "seq_mean_token_mean": 1.5,  # (mean A 2 + mean B 1)/2 sequences
    "seq_mean_token_sum": 4.0,  # (sum A 4 + sum B 4)/2 sequences
    "seq_mean_token_sum_norm": 0.5,  # (4+4)/(2 sequences · L_norm 8)
}


@pytest.mark.parametrize("mode", list(AGG_EXPECTED))
def test_aggregation_modes_hand_values(mode):
    close(aggregate(LOSS_AB, MASK_AB, mode, L_norm=8), AGG_EXPECTED[mode])


@pytest.mark.parametrize("mode", list(AGG_EXPECTED))
def test_explicit_normaliser_makes_micro_batches_exact(mode):
    # Micro-batches [A] and [B], each aggregated with the normaliser of the whole step batch, sum to the
    # full-batch value; for token_mean the naive "mean per micro-batch, then average" gives
    # (2 + 1)/2 = 1.5 ≠ 1.333333 — the accumulation bug this API exists to prevent.
    masks = [MASK_AB[:1], MASK_AB[1:]]
    norm = loss_normaliser(masks, mode, L_norm=8)
    summed = sum(aggregate(LOSS_AB[i:i + 1], MASK_AB[i:i + 1], mode, norm) for i in range(2))
    close(summed, AGG_EXPECTED[mode])
    naive = sum(aggregate(LOSS_AB[i:i + 1], MASK_AB[i:i + 1], mode, L_norm=8) for i in range(2)) / 2
    if mode == "token_mean":
        close(naive, 1.5)
        assert abs(naive.item() - AGG_EXPECTED[mode]) > 0.1


def test_float64_normaliser_keeps_a_float32_loss_float32_and_empty_masks_give_zero():
    loss = LOSS_AB.float().requires_grad_(True)
    norm = loss_normaliser(MASK_AB, "token_mean")  # float64 count
    assert norm.dtype == F64
    assert aggregate(loss, MASK_AB.float(), "token_mean", norm).dtype == torch.float32
    empty = aggregate(loss, torch.zeros(2, 4), "seq_mean_token_mean")
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="normaliser must be > 0"):
        aggregate(loss, MASK_AB.float(), "token_mean", 0.0)


def test_loss_normaliser_counts():
    # 3 sequences, the last fully masked (e.g. overlong-filtered): N_tok = 2 + 4 = 6, N_seq = 2.
    mask = torch.cat([MASK_AB, torch.zeros(1, 4, dtype=F64)])
    close(loss_normaliser(mask, "token_mean"), 6.0)
    close(loss_normaliser(mask, "seq_mean_token_mean"), 2.0)
    close(loss_normaliser(mask, "seq_mean_token_sum"), 2.0)
    close(loss_normaliser(mask, "seq_mean_token_sum_norm", L_norm=8), 16.0)
    # additive over micro-batches of different padded lengths
    close(loss_normaliser([MASK_AB[:1, :2], MASK_AB[1:]], "token_mean"), 6.0)
    with pytest.raises(ValueError, match="L_norm"):
        loss_normaliser(mask, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="mode='seq_mean'"):
        loss_normaliser(mask, "seq_mean")


# ============================================================================ advantages

R4 = t64(1, 0, 0, 1).view(1, 4)
R_TWO_GROUPS = t64(1, 0, 0, 1, 1, 1, 1, 0).view(2, 4)


def test_grpo_advantage_hand_values():
    # mean 0.5; deviations ±0.5; ddof=1: std = sqrt(4·0.25/3) = 0.577350 → A = ±0.5/0.577350 = ±0.866025.
    close(group_advantages(R4, "grpo", eps=0.0), [[0.866025, -0.866025, -0.866025, 0.866025]])
    # ddof=0: std = 0.5 → A = ±1.
    close(group_advantages(R4, "grpo", std_ddof=0, eps=0.0), [[1.0, -1.0, -1.0, 1.0]])
    # dapo uses the same estimator
    close(group_advantages(R4, "dapo", eps=0.0), group_advantages(R4, "grpo", eps=0.0), atol=0)
    # with the default ε = 1e-6 the value moves by ~1.5e-6·0.866: 0.5/(0.577350+1e-6) = 0.8660239
    close(group_advantages(R4, "grpo"), [[0.8660239, -0.8660239, -0.8660239, 0.8660239]])


def test_dr_grpo_and_rloo_hand_values():
    close(group_advantages(R4, "dr_grpo"), [[0.5, -0.5, -0.5, 0.5]])  # R − 0.5
    # R=1: 1 − (0+0+1)/3 = 2/3;  R=0: 0 − (1+0+1)/3 = −2/3   (= G/(G−1)·(R − mean) = 4/3 · ±0.5)
    close(group_advantages(R4, "rloo"), [[2 / 3, -2 / 3, -2 / 3, 2 / 3]])


def test_reinforce_pp_hand_values():
    # 8 rewards, five 1s and three 0s: mean_B 0.625; Σ(R − mean)² = 5·0.375² + 3·0.625² = 1.875;
    # std_B (ddof 1) = sqrt(1.875/7) = 0.517549 → A = 0.375/0.517549 = 0.724569, −0.625/0.517549 = −1.207615.
    A = group_advantages(R_TWO_GROUPS, "reinforce_pp", eps=0.0)
    expected = torch.where(R_TWO_GROUPS == 1, t64(0.724569), t64(-1.207615))
    close(A, expected)


def test_reinforce_pp_group_baseline_hand_values():
    # a = R − mean_G: group 1 mean 0.5 → (.5,−.5,−.5,.5); group 2 mean 0.75 → (.25,.25,.25,−.75).
    # mean_B a = 0; Σa² = 4·0.25 + 3·0.0625 + 0.5625 = 1.75; std_B = sqrt(1.75/7) = 0.5 → A = 2a.
    A = group_advantages(R_TWO_GROUPS, "reinforce_pp", eps=0.0, baseline="group")
    close(A, t64(1, -1, -1, 1, 0.5, 0.5, 0.5, -1.5).view(2, 4))


@pytest.mark.parametrize("kind", ["grpo", "dapo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("value", [1.0, 0.1, -3.7])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_constant_group_gets_exactly_zero_advantage(kind, value, eps):
    # 0.1 repeated 3 times has an inexact float mean; the result must still be exactly 0, never NaN.
    R = torch.cat([torch.full((1, 3), value, dtype=F64), t64(1, 0, 0).view(1, 3)])
    A = group_advantages(R, kind, eps=eps)
    assert torch.equal(A[0], torch.zeros(3, dtype=F64))
    assert torch.isfinite(A).all()


def test_reinforce_pp_does_not_zero_constant_groups_and_guards_a_constant_batch():
    # Group (1,1) inside a batch with another group (0,0): batch mean 0.5, std sqrt(4·0.25/3) = 0.577350.
    R = t64(1, 1, 0, 0).view(2, 2)
    close(group_advantages(R, "reinforce_pp", eps=0.0), [[0.866025, 0.866025], [-0.866025, -0.866025]])
    assert torch.equal(group_advantages(torch.ones(2, 2, dtype=F64), "reinforce_pp", eps=0.0),
                       torch.zeros(2, 2, dtype=F64))


def _loop_advantages(rows, kind, ddof=1, eps=1e-6):
    """Per-group reference with Python's statistics module."""
    out = []
    for r in rows:
        mean = sum(r) / len(r)
        if kind == "dr_grpo":
            out.append([x - mean for x in r])
        elif kind == "rloo":
            out.append([x - (sum(r) - x) / (len(r) - 1) for x in r])
        else:
            std = statistics.stdev(r) if ddof == 1 else statistics.pstdev(r)
            out.append([0.0 if std == 0 else (x - mean) / (std + eps) for x in r])
    return out


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo"])
def test_vectorised_advantages_match_a_per_group_loop(kind):
    g = torch.Generator().manual_seed(4)
    R = torch.randint(0, 3, (16, 6), generator=g).to(F64) * 0.5  # includes some constant groups
    R[3] = 1.0
    close(group_advantages(R, kind), _loop_advantages(R.tolist(), kind), atol=1e-12)


@pytest.mark.parametrize("kind", ["grpo", "dapo", "dr_grpo", "rloo"])
def test_advantages_invariant_to_group_shift_and_grpo_to_scale(kind):
    g = torch.Generator().manual_seed(5)
    R = torch.rand(5, 8, generator=g, dtype=F64)
    shift = torch.randn(5, 1, generator=g, dtype=F64)  # a different constant per group
    close(group_advantages(R + shift, kind, eps=0.0), group_advantages(R, kind, eps=0.0), atol=1e-12)
    if kind in ("grpo", "dapo"):
        close(group_advantages(3.5 * R, kind, eps=0.0), group_advantages(R, kind, eps=0.0), atol=1e-12)


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="kind='ppo'"):
        group_advantages(R4, "ppo")
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1), "grpo")
    with pytest.raises(ValueError, match="baseline"):
        group_advantages(R4, "grpo", baseline="group")
    with pytest.raises(ValueError, match="non-finite"):
        group_advantages(t64(1, float("nan")).view(1, 2), "dr_grpo")
    with pytest.raises(ValueError, match="matrix"):
        group_advantages(t64(1, 0), "grpo")


def test_overlong_penalty_hand_values():
    # L_max 20480, L_cache 4096: soft zone starts at 16384. 18432 → (16384−18432)/4096 = −0.5; 20480 → −1.
    close(overlong_penalty(torch.tensor([16384, 18432, 20480, 20481]), 20480, 4096), [0.0, -0.5, -1.0, -1.0])
    close(overlong_penalty(torch.tensor([100]), 20480, 4096), [0.0])
    with pytest.raises(ValueError, match="L_cache"):
        overlong_penalty(torch.tensor([1]), 10, 20)


# ============================================================================ policy loss


def token_loss(log_ratio, advantage, **kw):
    """The per-token loss l and d l / d ℓθ for one token (normaliser 1 so the aggregate is l itself)."""
    lp = torch.tensor([[0.0]], dtype=F64, requires_grad=True)
    old = torch.tensor([[-log_ratio]], dtype=F64)
    loss, metrics = policy_loss(lp, old, t64(advantage), torch.ones(1, 1, dtype=F64), normaliser=1.0, **kw)
    grad, = torch.autograd.grad(loss, lp)
    return loss.item(), grad.item(), metrics


def test_clip_high_dapo():
    # A=+1, ρ = e^0.5 = 1.648721 > 1 + 0.28: l = max(−1.648721, −1.28) = −1.28; clipped → zero gradient.
    loss, grad, m = token_loss(0.5, 1.0, clip_eps_low=0.2, clip_eps_high=0.28)
    close(loss, -1.28)
    close(grad, 0.0)
    close(m["clip_frac_high"], 1.0)
    close(m["clip_frac_low"], 0.0)


def test_unclipped_ratio():
    # A=+1, ρ = 1.1 inside [0.8, 1.2]: l = −1.1, ∂l/∂ℓθ = −A·ρ = −1.1.
    loss, grad, m = token_loss(math.log(1.1), 1.0, clip_eps_low=0.2, clip_eps_high=0.2)
    close(loss, -1.1)
    close(grad, -1.1)
    close(m["clip_frac_high"] + m["clip_frac_low"], 0.0)


def test_clip_low_negative_advantage():
    # A=−1, ρ = 0.5: l = max(0.5, 0.8) = 0.8 (clipped, zero gradient).
    loss, grad, m = token_loss(math.log(0.5), -1.0, clip_eps_low=0.2, clip_eps_high=0.2)
    close(loss, 0.8)
    close(grad, 0.0)
    close(m["clip_frac_low"], 1.0)


def test_pessimistic_side_is_not_clipped():
    # A=+1, ρ = 0.5: max(−0.5, −0.8) = −0.5, unclipped, gradient −ρ = −0.5.
    loss, grad, _ = token_loss(math.log(0.5), 1.0)
    close(loss, -0.5)
    close(grad, -0.5)
    # A=−1, ρ = 1.5: max(1.5, 1.2) = 1.5, gradient −A·ρ = 1.5.
    loss, grad, _ = token_loss(math.log(1.5), -1.0)
    close(loss, 1.5)
    close(grad, 1.5)


def test_dual_clip():
    # A=−1, ρ = 4: PPO l = max(4, 1.2) = 4 with gradient 4; dual clip c=3: l = min(4, 3) = 3, gradient 0.
    loss, grad, m = token_loss(math.log(4.0), -1.0)
    close(loss, 4.0)
    close(grad, 4.0)
    close(m["clip_frac_dual"], 0.0)
    loss, grad, m = token_loss(math.log(4.0), -1.0, dual_clip_c=3.0)
    close(loss, 3.0)
    close(grad, 0.0)
    close(m["clip_frac_dual"], 1.0)
    # dual clip never touches A > 0: A=+1, ρ = 4 → −1.2
    loss, _, _ = token_loss(math.log(4.0), 1.0, dual_clip_c=3.0)
    close(loss, -1.2)


def test_truncated_importance_sampling_weights():
    # ℓold − ℓsamp = ln 10, ln 2, −ln 2 → exp = 10, 2, 0.5; cap 5 → w = 5, 2, 0.5. On-policy ratio 1 and
    # A = +1: l = −w, token_mean over 3 tokens = −(5 + 2 + 0.5)/3 = −2.5. Capped fraction 1/3, mean w 2.5.
    lp = torch.zeros(1, 3, dtype=F64)
    samp = -t64(math.log(10), math.log(2), -math.log(2)).view(1, 3)
    loss, m = policy_loss(lp, lp, t64(1.0), torch.ones(1, 3, dtype=F64), sampler_logprobs=samp, tis_cap=5.0)
    close(loss, -2.5)
    close(m["tis_capped_frac"], 1 / 3)
    close(m["tis_weight_mean"], 2.5)
    # without a cap: −(10 + 2 + 0.5)/3
    loss, _ = policy_loss(lp, lp, t64(1.0), torch.ones(1, 3, dtype=F64), sampler_logprobs=samp, tis_cap=None)
    close(loss, -12.5 / 3)


def test_kl_estimators_hand_values():
    # ℓθ = ln 0.5, ℓref = ln 0.25: u = ln 0.5 = −0.693147.  k1 = −u = 0.693147;  k2 = u²/2 = 0.240227;
    # k3 = e^u − 1 − u = 0.5 − 1 + 0.693147 = 0.193147.
    lp, ref = s64(math.log(0.5)), s64(math.log(0.25))
    close(kl_estimate(lp, ref, "k1"), 0.693147)
    close(kl_estimate(lp, ref, "k2"), 0.240227)
    close(kl_estimate(lp, ref, "k3"), 0.193147)
    with pytest.raises(ValueError, match="kind='k4'"):
        kl_estimate(lp, ref, "k4")


def test_kl_estimators_match_closed_forms_on_categoricals():
    # Exact expectations over y ~ p on a 6-outcome categorical (p = policy, q = reference):
    #   E_p[k1] = E_p[k3] = KL(p‖q);  E_p[k2] = ½ E_p[log²(p/q)];
    #   as losses (sampling distribution held fixed): E_p[∇k2] = ∇KL(p‖q),  E_p[∇k3] = ∇KL(q‖p), E_p[∇k1] = 0.
    g = torch.Generator().manual_seed(6)
    z = torch.randn(6, generator=g, dtype=F64, requires_grad=True)
    lq = torch.log_softmax(torch.randn(6, generator=g, dtype=F64), 0)
    lp = torch.log_softmax(z, 0)
    p = lp.detach().exp()
    kl_pq = (p * (lp.detach() - lq)).sum()
    close((p * kl_estimate(lp.detach(), lq, "k1")).sum(), kl_pq, atol=1e-12)
    close((p * kl_estimate(lp.detach(), lq, "k3")).sum(), kl_pq, atol=1e-12)
    close((p * kl_estimate(lp.detach(), lq, "k2")).sum(), 0.5 * (p * (lp.detach() - lq) ** 2).sum(), atol=1e-12)
    grads = {k: torch.autograd.grad((p * kl_estimate(lp, lq, k)).sum(), z, retain_graph=True)[0]
             for k in ("k1", "k2", "k3")}
    grad_rev, = torch.autograd.grad((lp.exp() * (lp - lq)).sum(), z, retain_graph=True)  # ∇KL(p‖q)
    grad_fwd, = torch.autograd.grad((lq.exp() * (lq - lp)).sum(), z)  # ∇KL(q‖p)
    close(grads["k1"], torch.zeros(6), atol=1e-12)
    close(grads["k2"], grad_rev, atol=1e-12)
    close(grads["k3"], grad_fwd, atol=1e-12)


def test_kl_and_entropy_terms_in_policy_loss():
    # Two tokens, on-policy, A = 0 (no PG term): ℓθ = ln 0.5, ℓref = ln 0.25 for both → k3 = 0.193147 each;
    # β = 0.1 → token_mean 0.0193147. Entropy H = (1.0, 2.0), coef 0.01 → −0.01·1.5 = −0.015.
    lp = torch.full((1, 2), math.log(0.5), dtype=F64)
    ref = torch.full((1, 2), math.log(0.25), dtype=F64)
    ent = t64(1.0, 2.0).view(1, 2)
    loss, m = policy_loss(lp, lp, t64(0.0), torch.ones(1, 2, dtype=F64), ref_logprobs=ref, kl_coef=0.1,
                          entropy=ent, entropy_coef=0.01)
    close(loss, 0.0193147 - 0.015)
    close(m["kl_ref"], 0.193147)
    close(m["entropy"], 1.5)
    close(m["pg_loss"], 0.0)


def test_approx_kl_old_new_metric():
    # log ρ = ln 2 on both tokens: k3 estimate of KL(old‖new) = (ρ − 1) − log ρ = 1 − 0.693147 = 0.306853.
    lp = torch.full((1, 2), math.log(2), dtype=F64)
    _, m = policy_loss(lp, torch.zeros(1, 2, dtype=F64), t64(1.0), torch.ones(1, 2, dtype=F64))
    close(m["approx_kl_old_new"], 0.306853)


def test_on_policy_seq_mean_token_mean_loss_is_zero():
    # On-policy ρ = 1, so l_it = −A_i and (1/N) Σ_i mean_t(−A_i) = −(1/N) Σ_i A_i = 0 since GRPO
    # advantages sum to 0 within each group (lengths differ per sequence; they cancel in the token mean).
    A = group_advantages(R_TWO_GROUPS, "grpo", eps=0.0).view(-1)
    mask = (torch.arange(6)[None, :] < torch.tensor([1, 2, 3, 4, 5, 6, 2, 3])[:, None]).to(F64)
    lp = torch.randn(8, 6, generator=torch.Generator().manual_seed(7), dtype=F64)
    loss, _ = policy_loss(lp, lp, A, mask, aggregation="seq_mean_token_mean")
    close(loss, 0.0, atol=1e-12)


def test_policy_loss_rejects_bad_input():
    lp = torch.zeros(2, 3)
    ones = torch.ones(2, 3)
    with pytest.raises(ValueError, match="`mask` has shape"):
        policy_loss(lp, lp, torch.zeros(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="advantages has shape"):
        policy_loss(lp, lp, torch.zeros(3), ones)
    with pytest.raises(ValueError, match="dual_clip_c"):
        policy_loss(lp, lp, torch.zeros(2), ones, dual_clip_c=1.0)
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        policy_loss(lp, lp, torch.zeros(2), ones, kl_coef=0.1)
    with pytest.raises(ValueError, match="aggregation|mode"):
        policy_loss(lp, lp, torch.zeros(2), ones, aggregation="mean")


# ============================================================================ LPO


def test_lpo_k2_tau_one_on_policy():
    # R = (1, 0), τ = 1: w* = softmax(1, 0) = (σ(1), σ(−1)) = (0.731059, 0.268941); on-policy s = 0 → P = (½, ½).
    # fwd: c = P − w* = (−0.231059, 0.231059).  rev: d = s − log w* = (0.313262, 1.313262), d̄ = 0.813262,
    # c = P·(d − d̄) = ½·(−0.5, 0.5) = (−0.25, 0.25) = −A/K with A = R − R̄ = (0.5, −0.5), K = 2.
    R = t64(1, 0).view(1, 2)
    s = torch.zeros(1, 2, dtype=F64)
    target, valid = lpo_target(R, "one")
    close(target, [[0.731059, 0.268941]])
    assert valid.tolist() == [True]
    close(lpo_weights(R, s, "fwd", "one"), [[-0.231059, 0.231059]])
    close(lpo_weights(R, s, "rev", "one"), [[-0.25, 0.25]])


def test_lpo_k4_tau_std():
    # R = (1,1,0,0): σ (ddof 1) = sqrt(4·0.25/3) = 0.577350 → R/τ = (1.732051, 1.732051, 0, 0);
    # w* = e^1.732051/(2e^1.732051 + 2) = 0.424837 and 1/(2e^1.732051 + 2) = 0.075163.
    # fwd: c = 0.25 − w* = (−0.174837, …, 0.174837);  rev on-policy: c = −A/K, A = (R − 0.5)/τ = ±0.866025 → ∓0.216506.
    R = t64(1, 1, 0, 0).view(1, 4)
    s = torch.zeros(1, 4, dtype=F64)
    target, _ = lpo_target(R, "std")
    close(target, [[0.424837, 0.424837, 0.075163, 0.075163]])
    close(lpo_weights(R, s, "fwd", "std"), [[-0.174837, -0.174837, 0.174837, 0.174837]])
    close(lpo_weights(R, s, "rev", "std"), [[-0.216506, -0.216506, 0.216506, 0.216506]])
    close(lpo_weights(R, s, "rev", "std"), -group_advantages(R, "grpo", eps=0.0) / 4, atol=1e-12)


@pytest.mark.parametrize("kind", ["fwd", "rev"])
@pytest.mark.parametrize("tau", ["std", "one", "mean", 0.3])
def test_lpo_weights_sum_to_zero_and_match_autograd(kind, tau):
    # Σ_k c_k = 0 and ∂D/∂s = c for D = KL(w*‖softmax s) (fwd) or KL(softmax s‖w*) (rev); lpo_loss divides
    # by the number of valid groups (all 6 here).
    g = torch.Generator().manual_seed(8)
    R = torch.rand(6, 5, generator=g, dtype=F64)
    s = torch.randn(6, 5, generator=g, dtype=F64, requires_grad=True)
    c = lpo_weights(R, s, kind, tau)
    close(c.sum(dim=1), torch.zeros(6), atol=1e-12)
    loss, _ = lpo_loss(R, s, kind, tau)
    grad, = torch.autograd.grad(loss, s)
    close(grad * 6, c, atol=1e-12)


def test_lpo_fwd_weights_bounded_and_vanish_at_target():
    g = torch.Generator().manual_seed(9)
    R = torch.rand(50, 8, generator=g, dtype=F64)
    s = 5 * torch.randn(50, 8, generator=g, dtype=F64)
    c = lpo_weights(R, s, "fwd", "std")
    assert c.abs().max() <= 1.0
    assert c.abs().sum(dim=1).max() <= 2.0 + 1e-12
    # at s = log w* (+ any per-group constant), P = w*: both kinds give c = 0.
    target, _ = lpo_target(R, "std")
    s_star = target.log() + 3.0
    close(lpo_weights(R, s_star, "fwd", "std"), torch.zeros(50, 8), atol=1e-12)
    close(lpo_weights(R, s_star, "rev", "std"), torch.zeros(50, 8), atol=1e-12)


@pytest.mark.parametrize("tau", ["std", "one", "mean", 2.0])
@pytest.mark.parametrize("kind", ["fwd", "rev"])
def test_lpo_identical_rewards_are_masked(kind, tau):
    # Group 0 has identical rewards: c = 0, no NaN, not counted. The loss then equals that of group 1 alone.
    R = t64(1, 1, 1, 1, 1, 0, 0, 0).view(2, 4)
    s = torch.randn(2, 4, generator=torch.Generator().manual_seed(10), dtype=F64)
    c = lpo_weights(R, s, kind, tau)
    assert torch.equal(c[0], torch.zeros(4, dtype=F64))
    assert torch.isfinite(c).all()
    loss, m = lpo_loss(R, s, kind, tau)
    alone, _ = lpo_loss(R[1:], s[1:], kind, tau)
    close(loss, alone, atol=1e-12)
    close(m["masked_group_frac"], 0.5)
    close(lpo_normaliser(R), 1.0)
    close(lpo_normaliser([R[:1], R[1:]]), 1.0)  # additive over micro-batches
    close(lpo_normaliser(R, identical_groups="project"), 2.0)


def test_lpo_mean_rule_all_zero_rewards_and_range_check():
    # R = (0,0,0,0): μ_G = 0 would divide by zero; the group is identical, so it is masked.
    R = torch.zeros(1, 4, dtype=F64)
    assert torch.equal(lpo_weights(R, torch.randn(1, 4, dtype=F64), "fwd", "mean"), torch.zeros(1, 4, dtype=F64))
    _, valid = lpo_target(R, "mean")
    assert valid.tolist() == [False]
    with pytest.raises(ValueError, match=r"tau='mean' needs rewards in \[0, 1\]"):
        lpo_target(t64(2, 0).view(1, 2), "mean")
    with pytest.raises(ValueError, match="tau='median'"):
        lpo_target(t64(1, 0).view(1, 2), "median")
    with pytest.raises(ValueError, match="tau must be > 0"):
        lpo_target(t64(1, 0).view(1, 2), -1.0)


def test_lpo_identical_groups_project_pulls_to_uniform():
    # identical_groups="project": target uniform 1/K, the group counts, and fwd c = P − 1/K.
    R = torch.ones(1, 4, dtype=F64)
    s = t64(0.5, 0, 0, 0).view(1, 4)
    P = torch.softmax(s, 1)
    close(lpo_weights(R, s, "fwd", "std", identical_groups="project"), P - 0.25, atol=1e-12)
    _, valid = lpo_target(R, "std", identical_groups="project")
    assert valid.tolist() == [True]


def test_lpo_fwd_gradient_descent_converges_to_target():
    # Free s ∈ R⁴, gradient descent on L_fwd: P → w* (atol 1e-4).
    R = t64(1, 0.5, 0, 0).view(1, 4)
    s = torch.zeros(1, 4, dtype=F64, requires_grad=True)
    for _ in range(300):
        loss, _ = lpo_loss(R, s, "fwd", "one")
        grad, = torch.autograd.grad(loss, s)
        with torch.no_grad():
            s -= 2.0 * grad
    target, _ = lpo_target(R, "one")
    close(torch.softmax(s.detach(), 1), target, atol=1e-4)


def test_lpo_k2_pairwise_form():
    # K = 2, R = (1, 0), τ = 1, s_w − s_l = 0.3: L_fwd = −σ(1)·log σ(0.3) − σ(−1)·log σ(−0.3) − H(w*),
    # H(w*) = −Σ w* log w* with w* = (σ(1), σ(−1)).
    sig = torch.sigmoid
    s = t64(0.3, 0.0).view(1, 2)
    loss, _ = lpo_loss(t64(1, 0).view(1, 2), s, "fwd", "one")
    w = sig(t64(1.0, -1.0))
    entropy = -(w * w.log()).sum()
    pairwise = -sig(s64(1.0)) * torch.log(sig(s64(0.3))) - sig(s64(-1.0)) * torch.log(sig(s64(-0.3)))
    close(loss, pairwise - entropy, atol=1e-12)


def _tiny_policy(seed=11, V=7, D=5, B=2, G=4, T=6):
    """A linear "policy": logits = features_BTD @ W.T, with random sampled tokens and lengths."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, D, generator=g, dtype=F64, requires_grad=True)
    feats = torch.randn(B * G, T, D, generator=g, dtype=F64)
    tokens = torch.randint(0, V, (B * G, T), generator=g)
    lengths = torch.randint(1, T + 1, (B * G,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(F64)
    return W, feats, tokens, mask


def test_lpo_rev_equals_grpo_seq_mean_token_sum_on_policy():
    # On-policy (s = 0), no degenerate group, adv ε = 0: c_rev = −A/K, so LPO_rev's parameter gradient
    # Σ_groups Σ_k c_k ∇log π(y_k) / B equals GRPO's −Σ_i A_i Σ_t ∇ℓ / (B·K) (seq_mean_token_sum).
    W, feats, tokens, mask = _tiny_policy()
    R = t64(1, 0, 0, 1, 0.5, 1, 0, 0).view(2, 4)
    lp = gather_logprobs(torch.einsum("ntd,vd->ntv", feats, W), tokens)
    s = sequence_logratio(lp, lp.detach(), mask).view(2, 4)
    close(s, torch.zeros(2, 4), atol=0)
    lpo, _ = lpo_loss(R, s, "rev", "std")
    grad_lpo, = torch.autograd.grad(lpo, W, retain_graph=True)
    A = group_advantages(R, "grpo", eps=0.0).view(-1)
    grpo, _ = policy_loss(lp, lp.detach(), A, mask, aggregation="seq_mean_token_sum")
    grad_grpo, = torch.autograd.grad(grpo, W)
    close(grad_lpo, grad_grpo, atol=1e-12)
    assert grad_grpo.abs().max() > 1e-3  # the gradients compared are not trivially zero


def test_lpo_off_policy_second_epoch_recomputes_weights():
    # After one SGD step on L_fwd, the same rollouts give s ≠ 0, P ≠ uniform, and c_fwd = P − w*
    # (the autograd gradient of the loss, times the number of groups).
    W, feats, tokens, mask = _tiny_policy(seed=12)
    R = t64(1, 0, 0, 1, 0.5, 1, 0, 0).view(2, 4)
    behaviour = gather_logprobs(torch.einsum("ntd,vd->ntv", feats, W), tokens).detach()

    def loss_and_s():
        lp = gather_logprobs(torch.einsum("ntd,vd->ntv", feats, W), tokens)
        s = sequence_logratio(lp, behaviour, mask).view(2, 4)
        return lpo_loss(R, s, "fwd", "std")[0], s

    loss, _ = loss_and_s()
    grad, = torch.autograd.grad(loss, W)
    with torch.no_grad():
        W -= 0.5 * grad
    loss, s = loss_and_s()
    P = torch.softmax(s.detach(), 1)
    assert (P - 0.25).abs().max() > 1e-3
    target, _ = lpo_target(R, "std")
    c = lpo_weights(R, s, "fwd", "std")
    close(c, P - target, atol=1e-12)
    grad_s, = torch.autograd.grad(loss, s)
    close(grad_s * 2, c, atol=1e-12)
