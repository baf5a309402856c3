"""ADWIN horizon controller (specs/adwin.md §4.1): the rule on scripted audits, staleness, sketches, proxies,
prefix sampling and cost accounting — values derived by hand in the comments."""

import math

import pytest
import torch

from mentor.controllers.adwin import (AdwinConfig, GradientSketch, HorizonState, Probe, apply_audit,
                                      completion_positions, cosine, mass_fraction, progressive_horizon,
                                      segment_bounds, staleness_weight)
from mentor.cost import CostMeter, flop_params


def cfg(**kw):
    base = dict(h0=1024, h_min=512, h_max=4096, beta=2.0, tau=0.9, hysteresis=0.05, patience=2, ema_rate=0.5,
                staleness_decay=0.8)
    return AdwinConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- alignment


def test_alignment_orthogonal_late_part():
    # g_pre = (1, 0), g_late = (0, 1): cos((1,0), (1,1)) = 1/√2
    g_pre, g_late = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert cosine(g_pre, g_pre + g_late) == pytest.approx(0.70710678, abs=1e-7)


def test_alignment_without_late_signal_is_one_and_zero_gradients_are_handled():
    g = torch.tensor([0.3, -2.0, 1.0])
    assert cosine(g, g + torch.zeros(3)) == pytest.approx(1.0, abs=1e-12)
    assert cosine(torch.zeros(3), torch.zeros(3)) == 1.0  # no signal anywhere
    assert cosine(torch.zeros(3), g) == 0.0  # all of the update is past H


# ----------------------------------------------------------------------------- the rule


def run_rule(state, audits, c, s=1):
    out = []
    for a in audits:
        state, event, ema = apply_audit(state, a, s, c, c.h_max)
        out.append((state.H, event, ema))
    return state, out


def test_rule_trajectory_shrink_grow_hold():
    c = cfg()
    # α·w = 0.5 · 0.8 = 0.4. Audits 0.97, 0.96: ā = 0.97 (first), then 0.6·0.97 + 0.4·0.96 = 0.966 ≥ 0.95 twice
    # → shrink 1024 → 512, reset.
    state, out = run_rule(HorizonState(1024), [0.97, 0.96], c)
    assert [(h, e) for h, e, _ in out] == [(1024, "hold"), (512, "shrink")]
    assert out[0][2] == pytest.approx(0.97, abs=1e-12) and out[1][2] == pytest.approx(0.966, abs=1e-12)
    assert state.ema is None and state.n_ok == 0
    # next audit 0.85: ā = 0.85 (reset) < 0.9 → grow to 1024 at once
    state, out = run_rule(state, [0.85], c)
    assert out == [(1024, "grow", pytest.approx(0.85))]
    # next audits 0.92, 0.93: ā = 0.92, then 0.6·0.92 + 0.4·0.93 = 0.924 — inside [0.9, 0.95): hold at 1024
    state, out = run_rule(state, [0.92, 0.93], c)
    assert [(h, e) for h, e, _ in out] == [(1024, "hold"), (1024, "hold")]
    assert out[1][2] == pytest.approx(0.924, abs=1e-12) and state.n_ok == 0


def test_rule_hysteresis_band_resets_the_shrink_counter():
    c = cfg()
    # 0.97 (n_ok 1), then 0.6·0.97 + 0.4·0.91 = 0.946 < 0.95 → hold with n_ok reset to 0, then 0.97 again:
    # 0.6·0.946 + 0.4·0.97 = 0.9556 → n_ok 1 only: no shrink yet
    state, out = run_rule(HorizonState(1024), [0.97, 0.91, 0.97], c)
    assert [e for _, e, _ in out] == ["hold", "hold", "hold"]
    assert out[1][2] == pytest.approx(0.946, abs=1e-12) and state.n_ok == 1 and state.H == 1024


def test_rule_respects_bounds():
    c = cfg()
    state, out = run_rule(HorizonState(512), [0.99, 0.99], c)  # shrink at h_min stays at h_min
    assert state.H == 512 and out[-1][1] == "shrink"
    state, out = run_rule(HorizonState(4096), [0.1], c)  # grow at h_max stays at h_max
    assert state.H == 4096 and out[-1][1] == "grow"
    state, _ = run_rule(HorizonState(3000), [0.1], c)  # ceil(2 · 3000) = 6000 is capped
    assert state.H == 4096


def test_staleness_weight_enters_the_ema():
    c = cfg()
    assert staleness_weight(2, 0.8) == pytest.approx(0.64, abs=1e-12)
    # s = 2: α·w = 0.5·0.64 = 0.32; ā = 0.68·0.97 + 0.32·0.5 = 0.8196 → grow
    state, event, ema = apply_audit(HorizonState(1024, ema=0.97, n_ok=1), 0.5, 2, c, c.h_max)
    assert ema == pytest.approx(0.8196, abs=1e-12) and event == "grow" and state.H == 2048


def test_progressive_schedule():
    # geometric: h0·(h_max/h0)^(k/K): 32·8^(k/10): k=0 → 32, k=5 → 32·√8 = 90.51 → 91, k=10 and after → 256
    assert [progressive_horizon(k, 32, 256, 10) for k in (0, 5, 10, 20)] == [32, 91, 256, 256]
    # linear: 32 + 224·k/10: k=5 → 144
    assert progressive_horizon(5, 32, 256, 10, "linear") == 144


def test_segment_bounds():
    assert segment_bounds(64, 2.0, 256, False) == [64]
    assert segment_bounds(64, 2.0, 256, True) == [32, 64, 128]
    assert segment_bounds(200, 2.0, 256, True) == [100, 200]  # β·H = 400 is past h_max


# ----------------------------------------------------------------------------- the controller's bookkeeping


class FakeStepper:
    def __init__(self):
        self.cost = CostMeter()
        self.horizon = None


def make_controller(**adwin):
    """An AdwinController built around nothing but its rule state (the probe/audit machinery is exercised by the
    integration test); used to script the staleness logic."""
    from mentor.controllers.adwin import AdwinController

    c = cfg(**adwin)
    ctrl = AdwinController.__new__(AdwinController)
    ctrl.c, ctrl.h_max, ctrl.state, ctrl.queue = c, c.h_max, HorizonState(c.h0), []
    ctrl.counts = {"probes": 0, "audits": 0, "discarded": 0, "grow": 0, "shrink": 0}
    ctrl.audited = []
    ctrl.audit = lambda probe, s, ctx: ctrl.audited.append((probe.step, s)) or {}
    return ctrl


def test_stale_probes_are_discarded_and_late_ones_audited_with_their_staleness():
    ctrl = make_controller(audit_delay=1, max_staleness=3)
    # probe launched at k = 10 whose rollouts complete at k = 14: at k = 14 its staleness is 4 > 3 → discarded
    ctrl.queue = [Probe(step=10, ready=14)]
    for k in range(11, 15):
        ctrl.after_step(k, None, {})
    assert ctrl.audited == [] and ctrl.counts["discarded"] == 1 and ctrl.queue == []
    # completing at k = 12 instead: audited at k = 12 with s = 2 (EMA weight 0.8² = 0.64)
    ctrl.queue = [Probe(step=10, ready=12)]
    for k in range(11, 15):
        ctrl.after_step(k, None, {})
    assert ctrl.audited == [(10, 2)] and ctrl.counts["discarded"] == 1


# ----------------------------------------------------------------------------- proxies and sketches


def test_mass_proxy():
    # |A| = (1, 1, 2, 0), H = 2: (1 + 1) / 4 = 0.5
    abs_adv = torch.tensor([[1.0, 1.0, 2.0, 0.0]])
    pos = torch.tensor([[0, 1, 2, 3]])
    assert mass_fraction(abs_adv, pos, torch.ones(1, 4), 2) == pytest.approx(0.5, abs=1e-12)


def test_completion_positions_align_with_the_loss_mask():
    from mentor.rl import collate_rollouts
    from mentor.types import Rollout

    rs = [Rollout("a", (5, 6, 7), (8, 9), (-0.1, -0.2), "stop"), Rollout("b", (5,), (8, 9, 10), (-0.1,) * 3, "horizon")]
    batch = collate_rollouts(rs, 0, "cpu")
    pos = completion_positions(rs, batch.loss_mask.shape[1])
    # row a: prompt 3 tokens → completion token j is predicted at column 2 + j; row b: at column 0 + j
    assert pos.tolist() == [[-1, -1, 0, 1], [0, 1, 2, -1]]
    assert ((pos >= 0).float() == batch.loss_mask).all()


def test_countsketch_preserves_cosine():
    # random 10^5-dim pairs with cosine 0.8; m = 8192 buckets: error ≈ 1/√8192 ≈ 0.011, bound 0.03
    g = torch.Generator().manual_seed(0)
    for trial in range(3):
        x = torch.randn(100_000, generator=g, dtype=torch.float64)
        z = torch.randn(100_000, generator=g, dtype=torch.float64)
        z -= (z @ x) / (x @ x) * x
        y = 0.8 * x / x.norm() + 0.6 * z / z.norm()
        assert cosine(x, y) == pytest.approx(0.8, abs=1e-9)
        p1, p2 = torch.nn.Parameter(torch.zeros(60_000)), torch.nn.Parameter(torch.zeros(40_000))
        sk = GradientSketch("countsketch:8192", [("a", p1), ("b", p2)], seed=trial)
        sx, sy = sk([x[:60_000], x[60_000:]]), sk([y[:60_000], y[60_000:]])
        assert abs(cosine(sx, sy) - 0.8) < 0.03


def test_sketch_is_linear_and_params_mode_is_exact():
    p1, p2 = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))
    a = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    b = [torch.tensor([0.5, 0.0, -1.0]), None]
    sk = GradientSketch("countsketch:16", [("x", p1), ("y", p2)], seed=3)
    both = sk([a[0] + b[0], a[1]])
    assert torch.allclose(sk(a) + sk(b), both, atol=1e-12)  # sketch(g_pre) + sketch(g_late) = sketch(g_full)
    exact = GradientSketch("params:^y$", [("x", p1), ("y", p2)], seed=0)
    assert [n for n, _ in exact.named] == ["y"] and exact([a[1]]).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_bad_sketch_specs_are_config_errors():
    from mentor.config import ConfigError

    p = [("model.layers.0.mlp.up_proj.weight", torch.nn.Parameter(torch.zeros(2)))]
    for spec, msg in [("countsketch:x", "bucket count"), ("params:attn", "matches no trainable"), ("fft", "use countsketch")]:
        with pytest.raises(ConfigError, match=msg):
            GradientSketch(spec, p, seed=0)


# ----------------------------------------------------------------------------- cost (prefix sampling: test_sampling.py)


def test_cost_accounting_by_hand():
    """specs/adwin.md §4.1: B = 4, prompt 10, H = 8 (no EOS), N_s = 1e6, N_T = 4e6, no probe. Sampled 4·18 = 72
    tokens → 2·1e6·72 = 1.44e8; teacher 72 → 2·4e6·72 = 5.76e8; update 72 → 6·1e6·72 = 4.32e8; ℓold 72 → 1.44e8."""
    from mentor.cost import FORWARD, FORWARD_BACKWARD

    m = CostMeter()
    m.add("sampled", 72, FORWARD * 1e6 * 72)
    m.add("teacher", 72, FORWARD * 4e6 * 72)
    m.add("trained", 72, FORWARD_BACKWARD * 1e6 * 72)
    m.add("trained", 72, FORWARD * 1e6 * 72)
    out = m.metrics()
    assert out["cost/flops_sampled"] == pytest.approx(1.44e8) and out["cost/flops_teacher"] == pytest.approx(5.76e8)
    assert out["cost/flops_trained"] == pytest.approx(4.32e8 + 1.44e8)
    assert out["cost/tokens"] == 72 * 4 and out["cost/flops"] == pytest.approx(1.44e8 + 5.76e8 + 5.76e8)
    with pytest.raises(ValueError, match="cost role"):
        m.add("eval", 1, 1.0)


def test_flop_params_excludes_the_input_embedding():
    from mentor.models import build_tiny_model, build_tokenizer

    tok = build_tokenizer()
    model = build_tiny_model(tok, "100k")
    total = sum(p.numel() for p in model.parameters())
    # tied embeddings: the V × 64 matrix is both embedding and LM head, excluded once
    assert flop_params(model) == total - len(tok) * 64
    assert math.isclose(flop_params(model) / total, 1 - len(tok) * 64 / total)
