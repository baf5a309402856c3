"""Update diagnostics (`mentor.analysis`, specs/effopd.md §2.3 and §4.1): values on constructed matrices whose
singular values, subspaces and norms are known by construction."""

import math

import pytest
import torch

from mentor.analysis import (effective_rank, energy_fraction, layer_band, layer_index, mass_shares, module_type,
                             relative_norm, rescaled_early, singular_values, subspace_alignment, summarise,
                             tensor_rows, top_singular_subspaces)


def orthonormal(m, r, seed):
    q, _ = torch.linalg.qr(torch.randn(m, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def rank_r(m, n, sigmas, seed=0):
    """Q1 diag(σ) Q2ᵀ: singular values exactly `sigmas`, left/right subspaces span(Q1), span(Q2)."""
    r = len(sigmas)
    return orthonormal(m, r, seed) @ torch.diag(torch.tensor(sigmas, dtype=torch.float64)) @ orthonormal(n, r, seed + 1).T


def test_energy_and_effective_rank_of_diag_3_1_0_0():
    # σ = (3, 1, 0, 0): σ² = (9, 1): E_1 = 9/10, E_2 = 1; p = (0.9, 0.1), H = 0.325083, exp(H) = 1.384145
    s = singular_values(torch.diag(torch.tensor([3.0, 1.0, 0.0, 0.0])))
    assert energy_fraction(s, 1) == pytest.approx(0.9, abs=1e-12)
    assert energy_fraction(s, 2) == pytest.approx(1.0, abs=1e-12)
    assert effective_rank(s) == pytest.approx(1.384145488, abs=1e-8)


def test_rank_r_constructions():
    # rank 1 u vᵀ: all energy in σ_1, effective rank 1
    u, v = torch.randn(12, 1, dtype=torch.float64), torch.randn(7, 1, dtype=torch.float64)
    s = singular_values(u @ v.T)
    assert energy_fraction(s, 1) == pytest.approx(1.0, abs=1e-12) and effective_rank(s) == pytest.approx(1.0, abs=1e-9)
    # σ = (4, 2, 1) in a 16×10 matrix: σ² = (16, 4, 1) / 21: E_1 = 16/21, E_2 = 20/21, E_4 = 1;
    # H = 0.668018, effective rank exp(H) = 1.950368
    s = singular_values(rank_r(16, 10, [4.0, 2.0, 1.0]))
    assert energy_fraction(s, 1) == pytest.approx(16 / 21, abs=1e-12)
    assert energy_fraction(s, 2) == pytest.approx(20 / 21, abs=1e-12)
    assert energy_fraction(s, 4) == pytest.approx(1.0, abs=1e-12)
    assert effective_rank(s) == pytest.approx(1.950367504, abs=1e-8)
    # r equal singular values: effective rank r
    assert effective_rank(singular_values(rank_r(20, 20, [2.0] * 5))) == pytest.approx(5.0, abs=1e-9)
    assert math.isnan(energy_fraction(singular_values(torch.zeros(3, 3)), 1))
    with pytest.raises(ValueError, match="2-D matrix"):
        singular_values(torch.ones(3))


def test_subspace_alignment_known_angles():
    e = torch.eye(4, dtype=torch.float64)
    A = e[:, :2]
    assert subspace_alignment(A, A) == pytest.approx(1.0, abs=1e-12)  # identical
    assert subspace_alignment(A, e[:, 2:]) == pytest.approx(0.0, abs=1e-12)  # orthogonal
    # r = 1 at 60°: cos² 60° = 0.25
    b = torch.tensor([[math.cos(math.pi / 3)], [math.sin(math.pi / 3)], [0.0], [0.0]], dtype=torch.float64)
    assert subspace_alignment(e[:, :1], b) == pytest.approx(0.25, abs=1e-12)
    # r = 2 with principal angles 0° and 90°: (1 + 0) / 2
    assert subspace_alignment(A, torch.stack([e[:, 0], e[:, 2]], 1)) == pytest.approx(0.5, abs=1e-12)
    # invariant to the choice of basis inside the subspace (rotate A's columns)
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    assert subspace_alignment(A @ rot, A) == pytest.approx(1.0, abs=1e-12)


def test_top_singular_subspaces_recover_the_construction():
    M = rank_r(9, 6, [5.0, 3.0, 0.5], seed=3)
    U, V = top_singular_subspaces(M, 2)
    assert subspace_alignment(U, orthonormal(9, 3, 3)[:, :2]) == pytest.approx(1.0, abs=1e-10)
    assert subspace_alignment(V, orthonormal(6, 3, 4)[:, :2]) == pytest.approx(1.0, abs=1e-10)
    assert top_singular_subspaces(M, 50)[0].shape == (9, 6)  # r clipped to the smaller side


def test_relative_norm_mass_shares_and_rescaling():
    w0 = torch.eye(4)
    assert relative_norm(w0, w0 + 0.5 * torch.eye(4)) == pytest.approx(0.5, abs=1e-12)  # ‖0.5·I‖/‖I‖
    assert mass_shares({"mlp": 3.0, "attn": 1.0}) == {"mlp": 0.75, "attn": 0.25}
    # early ΔW = (1, 0), final ΔW = (0, 2): the early direction at the final norm 2
    assert torch.equal(rescaled_early(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])),
                       torch.tensor([2.0, 0.0]))


def test_names_types_layers_and_bands():
    assert module_type("model.layers.3.mlp.gate_proj.weight") == "gate"
    assert module_type("model.layers.0.self_attn.o_proj.weight") == "o"
    assert module_type("model.layers.0.post_attention_layernorm.weight") == "norm"
    assert module_type("model.embed_tokens.weight") == "embed" and module_type("lm_head.weight") == "lm_head"
    assert layer_index("model.layers.11.mlp.up_proj.weight") == 11 and layer_index("model.norm.weight") is None
    assert [layer_band(l, 6) for l in range(6)] == ["bottom", "bottom", "middle", "middle", "top", "top"]
    assert [layer_band(l, 4) for l in range(4)] == ["bottom", "bottom", "middle", "top"]  # floor(3l/4)
    with pytest.raises(ValueError):
        layer_band(4, 4)


def test_tensor_rows_and_summary_on_a_constructed_run():
    # one 2-layer "model": layer 0 MLP moves along a rank-1 direction that the final update shares (S = 1),
    # layer 1 q_proj moves at step 1 in a subspace orthogonal to its final one (S = 0); a norm weight moves too.
    u = torch.zeros(8, 1, dtype=torch.float64); u[0] = 1
    v = torch.zeros(8, 1, dtype=torch.float64); v[1] = 1
    w = torch.zeros(8, 1, dtype=torch.float64); w[2] = 1
    init = {"model.layers.0.mlp.up_proj.weight": torch.eye(8, dtype=torch.float64),
            "model.layers.1.self_attn.q_proj.weight": torch.eye(8, dtype=torch.float64),
            "model.layers.1.input_layernorm.weight": torch.ones(8, dtype=torch.float64)}
    step1 = {"model.layers.0.mlp.up_proj.weight": init["model.layers.0.mlp.up_proj.weight"] + u @ v.T,
             "model.layers.1.self_attn.q_proj.weight": init["model.layers.1.self_attn.q_proj.weight"] + w @ w.T,
             "model.layers.1.input_layernorm.weight": init["model.layers.1.input_layernorm.weight"]}
    step4 = {"model.layers.0.mlp.up_proj.weight": init["model.layers.0.mlp.up_proj.weight"] + 3 * u @ v.T,
             "model.layers.1.self_attn.q_proj.weight": init["model.layers.1.self_attn.q_proj.weight"] + u @ u.T,
             "model.layers.1.input_layernorm.weight": init["model.layers.1.input_layernorm.weight"] + 1.0}
    rows = tensor_rows(init, {1: step1, 4: step4}, ks=(1, 2), rank=1)
    by = {(r["step"], r["name"].split(".")[-2]): r for r in rows}
    assert by[(1, "up_proj")]["S_left"] == pytest.approx(1.0, abs=1e-12)
    assert by[(1, "up_proj")]["S_right"] == pytest.approx(1.0, abs=1e-12)
    assert by[(1, "q_proj")]["S_left"] == pytest.approx(0.0, abs=1e-12)
    assert by[(4, "up_proj")]["rel_norm"] == pytest.approx(3 / math.sqrt(8), abs=1e-12)  # ‖3uvᵀ‖ / ‖I_8‖
    assert by[(4, "up_proj")]["E1"] == pytest.approx(1.0, abs=1e-12) and by[(4, "up_proj")]["chance_left"] == 1 / 8
    assert "E1" not in by[(4, "input_layernorm")] and by[(4, "input_layernorm")]["delta_sq"] == 8.0
    assert by[(4, "up_proj")]["band"] == "bottom" and by[(4, "q_proj")]["band"] == "middle"  # L = 2: floor(3l/2)
    s = summarise(rows, ks=(1, 2))
    # final squared update norms: up 9, q 1, norm 8 -> shares 0.5, 1/18, 8/18
    assert s["mass_by_type"] == pytest.approx({"q": 1 / 18, "up": 0.5, "norm": 8 / 18}, abs=1e-12)
    assert s["mass_by_band"] == pytest.approx({"bottom": 0.5, "middle": 0.5}, abs=1e-12)
    assert s["per_step"][0]["S_left"] == pytest.approx(0.5, abs=1e-12)  # mean of 1 and 0
    assert s["per_step"][1]["delta_norm"] == pytest.approx(math.sqrt(18), abs=1e-12)
    assert s["rel_norm"][(1, "q")] == pytest.approx(1 / math.sqrt(8), abs=1e-12)
