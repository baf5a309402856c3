"""Hand-derived values for the MR.Q / DR.Q / TD3 numerics in `mentor.control.losses` (specs/drq.md §4.1)."""

import math

import pytest
import torch

from mentor.control import losses as L


# ----------------------------------------------------------------------------- symlog bins and two-hot

def test_symlog_symexp_round_trip():
    x = torch.tensor([-1e3, -2.5, -1e-3, 0.0, 1e-3, 2.5, 1e3], dtype=torch.float64)
    assert torch.allclose(L.symexp(L.symlog(x)), x, rtol=1e-12, atol=0)
    # symlog(e − 1) = 1
    assert L.symlog(torch.tensor(math.e - 1, dtype=torch.float64)).item() == pytest.approx(1.0, abs=1e-12)


def test_symexp_bins_match_mrq():
    bins = L.symexp_bins(-10, 10, 65)
    assert bins.shape == (65,)
    # linspace(-10, 10, 65) has step 0.3125; the centre bin is symexp(0) = 0, bin 33 is e^0.3125 − 1
    assert bins[32].item() == 0.0
    assert bins[33].item() == pytest.approx(math.exp(0.3125) - 1, rel=1e-6)
    assert bins[-1].item() == pytest.approx(math.exp(10) - 1, rel=1e-6)  # 22025.4658
    assert torch.equal(bins, -bins.flip(0))  # symmetric
    assert torch.all(bins[1:] > bins[:-1])


def test_two_hot_zero_and_bin_values_are_one_hot():
    bins = L.symexp_bins()
    p = L.two_hot(torch.tensor([0.0]), bins)
    assert p[0, 32].item() == 1.0 and p.sum().item() == 1.0  # all mass at the centre bin
    for k in (0, 5, 31, 33, 60, 64):
        p = L.two_hot(bins[k : k + 1], bins)
        assert p[0, k].item() == pytest.approx(1.0, abs=1e-6) and p[0].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_two_hot_interpolates_between_adjacent_bins():
    bins = L.symexp_bins().double()
    # x = 0.25·bins[33] lies between bins[32] = 0 and bins[33]: mass 0.75 at 32, 0.25 at 33
    x = 0.25 * bins[33]
    p = L.two_hot(x.reshape(1), bins)
    assert p[0, 32].item() == pytest.approx(0.75, abs=1e-12) and p[0, 33].item() == pytest.approx(0.25, abs=1e-12)
    assert (p[0] != 0).sum().item() == 2


def test_two_hot_decodes_back_to_x():
    xs = torch.linspace(-1e3, 1e3, 2001, dtype=torch.float64)
    bins64 = L.symexp_bins().double()
    p = L.two_hot(xs, bins64)
    assert torch.allclose(p.sum(1), torch.ones_like(xs), atol=1e-12)
    assert torch.allclose(p @ bins64, xs, atol=1e-9)
    bins32 = L.symexp_bins()
    assert torch.allclose(L.two_hot(xs.float(), bins32) @ bins32, xs.float(), atol=1e-4, rtol=1e-6)
    # decoding logits = log p reproduces x too (softmax of log p is p)
    logits = torch.log(L.two_hot(torch.tensor([3.0, -7.5]), bins32).clamp_min(1e-30))
    assert torch.allclose(L.two_hot_decode(logits, bins32)[:, 0], torch.tensor([3.0, -7.5]), atol=1e-5)


def test_two_hot_cross_entropy_uniform_logits_is_log_k():
    # uniform logits: −Σ p_k log(1/65) = log 65 for any target
    ce = L.two_hot_cross_entropy(torch.zeros(3, 65), torch.tensor([0.0, 1.7, -40.0]), L.symexp_bins())
    assert ce.shape == (3, 1)
    assert torch.allclose(ce, torch.full((3, 1), math.log(65)), atol=1e-6)


# ----------------------------------------------------------------------------- InfoNCE

# float64 so that the ~1e−5 losses are exact to 1e−12 (float32 log-softmax of logits 10 apart is ~1e−3 relative)
U = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
V = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)


def test_infonce_hand_computed():
    # τ = 0.1. Row 1 logits (u1·v1, u1·v2)/τ = (10, 0), positive 10: log(1 + e^−10) = 4.5398899e−5.
    # Row 2 logits (6, 8), positive 8: log(1 + e^−2) = 0.12692801. Mean 0.063486705.
    rows = L.infonce_per_row(U, V, tau=0.1)
    assert rows[0].item() == pytest.approx(math.log1p(math.exp(-10)), rel=1e-9)
    assert rows[1].item() == pytest.approx(math.log1p(math.exp(-2)), rel=1e-9)
    assert L.infonce_loss(U, V, 1.0, 0.1).item() == pytest.approx(0.063486705, abs=1e-9)


def test_infonce_mask_keeps_masked_row_as_negative():
    # Row 2 masked: (4.5399e−5·1 + 0.1269·0)/2; row 1 still sees v2 as a negative (its loss is unchanged).
    mask = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    assert L.infonce_loss(U, V, mask, 0.1).item() == pytest.approx(math.log1p(math.exp(-10)) / 2, rel=1e-9)


def test_infonce_normalises_inputs():
    assert torch.allclose(L.infonce_per_row(3 * U, 0.5 * V, 0.1), L.infonce_per_row(U, V, 0.1), atol=1e-7)


def test_infonce_bound_log_b():
    # Collapsed targets (all v equal): every row's logits are equal, loss = log B, so the bound log B − L is 0.
    B = 4
    u = torch.eye(B, dtype=torch.float64)
    v_same = torch.ones(B, B, dtype=torch.float64)
    assert L.infonce_loss(u, v_same, 1.0, 0.1).item() == pytest.approx(math.log(B), abs=1e-12)
    # Perfectly matched orthonormal pairs: logits 10 on the diagonal, 0 elsewhere, loss = log(1 + 3e^−10) → the
    # bound log B − L reaches log B up to 1.4e−4.
    loss = L.infonce_loss(u, u, 1.0, 0.1).item()
    assert loss == pytest.approx(math.log1p(3 * math.exp(-10)), rel=1e-9)
    assert math.log(B) - loss == pytest.approx(math.log(B) - 1.361905e-4, abs=1e-9)
    # and the loss is never negative nor above log B for random inputs at τ = 1 (cos ∈ [−1, 1]: L ≤ log(1+(B−1)e²))
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    rows = L.infonce_per_row(a, b, 1.0)
    assert torch.all(rows > 0) and torch.all(rows < math.log1p(63 * math.e**2))


def test_infonce_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        L.infonce_per_row(U, V, 0.0)


# ----------------------------------------------------------------------------- other encoder / value numerics

def test_masked_mse_normaliser_counts_masked_rows():
    # ((1² + 2²)·1 + (3² + 4²)·0) / 4 elements = 1.25 (MR.Q divides by B·D whatever the mask)
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert L.masked_mse(pred, torch.zeros(2, 2), torch.tensor([[1.0], [0.0]])).item() == pytest.approx(1.25, abs=1e-7)


def test_nstep_mrq_form_follows_mrq_code():
    r, nd = torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[1.0, 0.0, 1.0]])
    # MR.Q code: R = Σ γ^i r_i = 1 + 0.5 + 0.25 = 1.75 (rewards are not masked), D = γ³·Π nd = 0.
    # (specs/drq.md §4.1 lists R = 1.25, i.e. Σ γ^i r_i nd_i; `facebookresearch/MRQ:MRQ/MRQ.py multi_step_reward`
    # is (reward * gammas).sum(1), which gives 1.75 — we follow the code.)
    R, D = L.nstep_returns(r, nd, 0.5, "mrq")
    assert R.item() == pytest.approx(1.75, abs=1e-7) and D.item() == 0.0
    R, D = L.nstep_returns(r, torch.ones(1, 3), 0.5, "mrq")
    assert R.item() == pytest.approx(1.75, abs=1e-7) and D.item() == pytest.approx(0.125, abs=1e-7)


def test_nstep_standard_form_cuts_after_terminal():
    r, nd = torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[1.0, 0.0, 1.0]])
    # R = r0 + γ·nd0·r1 + γ²·nd0·nd1·r2 = 1 + 0.5 + 0 = 1.5; D = Π γ nd = 0
    R, D = L.nstep_returns(r, nd, 0.5, "standard")
    assert R.item() == pytest.approx(1.5, abs=1e-7) and D.item() == 0.0
    # terminal at the first step: R = r0 = 2, D = 0
    R, D = L.nstep_returns(torch.tensor([[2.0, 5.0, 7.0]]), torch.tensor([[0.0, 1.0, 1.0]]), 0.9, "standard")
    assert R.item() == pytest.approx(2.0, abs=1e-7) and D.item() == 0.0
    # no terminal: both forms agree, D = γ³
    r = torch.tensor([[1.0, 2.0, 4.0]])
    for form in ("mrq", "standard"):
        R, D = L.nstep_returns(r, torch.ones(1, 3), 0.5, form)
        assert R.item() == pytest.approx(1 + 1 + 1, abs=1e-7) and D.item() == pytest.approx(0.125, abs=1e-7)
    with pytest.raises(ValueError, match="form"):
        L.nstep_returns(r, torch.ones(1, 3), 0.5, "gae")


def test_mrq_value_target_scaling():
    R, D, q = torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[4.0]])
    # scaled: (1 + 0.5·4·2)/4 = 1.25; unscaled (DR.Q): 1 + 0.5·4 = 3
    assert L.mrq_value_target(R, D, q, 4.0, 2.0, scaled=True).item() == pytest.approx(1.25, abs=1e-7)
    assert L.mrq_value_target(R, D, q, 4.0, 2.0, scaled=False).item() == pytest.approx(3.0, abs=1e-7)


def test_td3_target():
    # 1 + 0.99·1·min(10, 12) = 10.9
    y = L.td3_target(torch.tensor([[1.0]]), torch.tensor([[1.0]]), torch.tensor([[10.0]]), torch.tensor([[12.0]]), 0.99)
    assert y.item() == pytest.approx(10.9, abs=1e-6)
    y = L.td3_target(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[10.0]]), torch.tensor([[12.0]]), 0.99)
    assert y.item() == 1.0


def test_smoothed_target_action_clips_noise_and_action():
    g = torch.Generator().manual_seed(0)
    a = L.smoothed_target_action(torch.full((10000, 1), 0.9), noise_std=10.0, noise_clip=0.5, generator=g)
    assert a.max().item() == 1.0 and a.min().item() == pytest.approx(0.4, abs=1e-6)  # 0.9 − 0.5
    assert torch.equal(L.smoothed_target_action(torch.full((3, 2), 0.2), 0.0, 0.5), torch.full((3, 2), 0.2))


def test_lap_priority():
    # max(0.5, 1)^0.4 = 1; 32^0.4 = 2^(5·0.4) = 4
    assert torch.allclose(L.lap_priority(torch.tensor([0.5, 32.0])), torch.tensor([1.0, 4.0]), atol=1e-6)


def test_fade_weight_and_half_life():
    # 0.9999^6931 = exp(6931·ln 0.9999) = 0.500006; 0.9999^30000 = 0.0498 → floor 0.1
    w = L.fade_weight(torch.tensor([0, 6931, 30000]))
    assert w[0].item() == 1.0
    assert w[1].item() == pytest.approx(0.500006, abs=1e-6)
    assert w[2].item() == 0.1
    assert L.fade_half_life() == pytest.approx(6931.12, abs=0.01)
    # lazy decay^age equals multiplying by decay once per add
    stepwise = 1.0
    for _ in range(20000):
        stepwise *= 0.9999
    assert L.fade_weight(torch.tensor([20000]), floor=0.0).item() == pytest.approx(stepwise, rel=1e-12)
