"""Hand-derived checks of the on-policy distillation numerics in mentor.losses (specs/opd.md §4.1):
sampled-token and discounted advantages, G-OPD / ExOPD, the policy-gradient identity, the `topk` and
`full` estimators, student = teacher invariances and the G-OPD optimum on a categorical toy."""

import math

import pytest
import torch

from mentor.losses import (
    discounted_future_sum,
    generalized_jsd,
    gather_logprobs,
    gopd_token_advantages,
    opd_token_advantages,
    policy_loss,
    topk_forward_kl,
    topk_logprobs,
)

F64 = torch.float64
# The spec's 4-token example: student uniform, teacher (0.5, 0.3, 0.15, 0.05).
P_TEACHER = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64),
                               atol=atol, rtol=0)


def example_logits():
    """(1, 1, 4) student logits (uniform, with grad) and teacher logits (log P_TEACHER)."""
    student = torch.zeros(1, 1, 4, dtype=F64, requires_grad=True)
    return student, P_TEACHER.log().view(1, 1, 4)


# ============================================================================ sampled-token advantages


def test_sampled_advantage_hand_value():
    # πT(y) = 0.5, πold(y) = 0.25: A = ln 0.5 − ln 0.25 = ln 2 = 0.693147.
    A = opd_token_advantages(torch.tensor([[math.log(0.25)]], dtype=F64), torch.tensor([[math.log(0.5)]], dtype=F64))
    close(A, [[0.693147]])


def test_discounted_advantage_hand_value():
    # r = (1, 0, −1), γ = 0.5: A₃ = −1; A₂ = 0 + 0.5·(−1) = −0.5; A₁ = 1 + 0.5·(−0.5) = 0.75.
    r = torch.tensor([[1.0, 0.0, -1.0]], dtype=F64)
    A = opd_token_advantages(torch.zeros(1, 3, dtype=F64), r, discount=0.5)
    close(A, [[0.75, -0.5, -1.0]])


@pytest.mark.parametrize("T", [1, 5, 128, 129, 300])
def test_discounted_advantage_equals_its_future_sum_definition(T):
    # A_t = Σ_{k≥t} γ^{k−t} r_k with r masked to 0 off the mask, across block boundaries (block = 128).
    g = torch.Generator().manual_seed(0)
    student = torch.randn(3, T, generator=g, dtype=F64)
    teacher = torch.randn(3, T, generator=g, dtype=F64)
    mask = (torch.rand(3, T, generator=g) > 0.2).to(F64)
    gamma = 0.97
    r = (teacher - student) * mask
    expected = torch.zeros(3, T, dtype=F64)
    for t in range(T):
        powers = gamma ** torch.arange(T - t, dtype=F64)  # γ^{k−t}, k = t..T−1
        expected[:, t] = (powers * r[:, t:]).sum(dim=1)
    close(opd_token_advantages(student, teacher, mask, discount=gamma), expected, atol=1e-10)
    close(discounted_future_sum(r, 0.0), r, atol=0)  # γ = 0 is the identity


def test_gopd_hand_value():
    # λ = 1.25, ℓT = −1, ℓref = −2, ℓold = −1.5: A = 1.25·(−1 + 2) − (−1.5 + 2) = 1.25 − 0.5 = 0.75
    # (= λℓT + (1−λ)ℓref − ℓold = −1.25 + 0.5 + 1.5).
    one = torch.ones(1, 1, dtype=F64)
    close(gopd_token_advantages(-1.5 * one, -1.0 * one, -2.0 * one, 1.25), [[0.75]])


def test_gopd_lambda_one_is_bit_identical_to_opd_for_any_reference():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    mask = (torch.rand(4, 9, generator=g) > 0.3).float()
    opd = opd_token_advantages(student, teacher, mask)
    for ref in (torch.randn(4, 9, generator=g), torch.full((4, 9), float("-inf")), None):
        assert torch.equal(gopd_token_advantages(student, teacher, ref, 1.0, mask=mask), opd)
    opd_discounted = opd_token_advantages(student, teacher, mask, discount=0.9)
    assert torch.equal(gopd_token_advantages(student, teacher, None, 1.0, mask=mask, discount=0.9),
                       opd_discounted)


def test_gopd_needs_a_reference_when_lambda_is_not_one():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="lam=1.25 != 1 needs ref_logprobs"):
        gopd_token_advantages(x, x, None, 1.25)
    with pytest.raises(ValueError, match="estimator='topk'.*topk_forward_kl"):
        opd_token_advantages(x, x, estimator="topk")
    with pytest.raises(ValueError, match="teacher_logprobs"):
        opd_token_advantages(x, torch.zeros(1, 3))


def test_advantages_are_zero_off_mask_and_carry_no_gradient():
    student = torch.zeros(1, 3, dtype=F64, requires_grad=True)
    A = opd_token_advantages(student, torch.ones(1, 3, dtype=F64), torch.tensor([[1.0, 1.0, 0.0]], dtype=F64))
    close(A, [[1.0, 1.0, 0.0]], atol=0)
    assert not A.requires_grad


# ============================================================================ policy-gradient identity


def expected_policy_gradient(student_logits_V, advantage_fn):
    """−∇ of policy_loss with exact expectation over the vocabulary: every token y is one "sequence" of
    length 1, weighted by πθ(y) through the (float) mask, on-policy, normaliser 1. Returns (−grad, π)."""
    V = student_logits_V.shape[-1]
    tokens = torch.arange(V).view(V, 1)
    lp = gather_logprobs(student_logits_V.view(1, 1, V).expand(V, 1, V), tokens)
    A = advantage_fn(lp.detach(), tokens)
    loss, _ = policy_loss(lp, lp.detach(), A, lp.detach().exp(), normaliser=1.0)
    grad, = torch.autograd.grad(loss, student_logits_V)
    return -grad, lp.detach().exp().view(-1)


def test_sampled_advantage_policy_gradient_equals_minus_grad_reverse_kl():
    # Student uniform π = ¼, teacher (0.5, 0.3, 0.15, 0.05): r(y) = ln πT(y) − ln ¼;
    # Σ_y π(y)·r(y)·(e_y − π) = (0.251086, 0.123380, −0.049907, −0.324560) = −∇_z KL(πθ‖πT), KL = 0.311199.
    z = torch.zeros(4, dtype=F64, requires_grad=True)
    log_teacher = P_TEACHER.log()
    ascent, pi = expected_policy_gradient(z, lambda lp, tok: opd_token_advantages(lp, log_teacher[tok]))
    close(ascent, [0.251086, 0.123380, -0.049907, -0.324560])
    log_pi = torch.log_softmax(z, 0)
    kl = (log_pi.exp() * (log_pi - log_teacher)).sum()
    close(kl, 0.311199)
    grad_kl, = torch.autograd.grad(kl, z)
    close(ascent, -grad_kl, atol=1e-12)


# ============================================================================ top-k and full estimators


def test_topk_with_tail_hand_values():
    # S = {0, 1} (teacher top-2). Tail: pT = 0.2, πθ = 0.5.
    # L = 0.5 ln(0.5/0.25) + 0.3 ln(0.3/0.25) + 0.2 ln(0.2/0.5) = 0.346574 + 0.054696 − 0.183258 = 0.218012.
    # ∂L/∂z = π − pT on S: (0.25 − 0.5, 0.25 − 0.3) = (−0.25, −0.05); off S: π(1 − 0.2/0.5) = 0.15.
    student, teacher = example_logits()
    t_lp, t_ids = topk_logprobs(teacher, 2)
    assert t_ids.tolist() == [[[0, 1]]]
    close(t_lp, P_TEACHER[:2].log().view(1, 1, 2))
    loss = topk_forward_kl(student, t_lp, t_ids, tail=True)
    close(loss, [[0.218012]])
    grad, = torch.autograd.grad(loss.sum(), student)
    close(grad.view(-1), [-0.25, -0.05, 0.15, 0.15])


def test_topk_renormalised_hand_values():
    # p̃T = (0.5, 0.3)/0.8 = (0.625, 0.375); L = 0.625 ln(0.625/0.25) + 0.375 ln(0.375/0.25) = 0.724731.
    # ∂L/∂z = π − p̃T·1[S] = (0.25 − 0.625, 0.25 − 0.375, 0.25, 0.25) = (−0.375, −0.125, 0.25, 0.25).
    student, teacher = example_logits()
    t_lp, t_ids = topk_logprobs(teacher, 2)
    loss = topk_forward_kl(student, t_lp, t_ids, tail=False)
    close(loss, [[0.724731]])
    grad, = torch.autograd.grad(loss.sum(), student)
    close(grad.view(-1), [-0.375, -0.125, 0.25, 0.25])


def test_full_jsd_hand_values():
    # β = 0: KL(πT‖πθ) = Σ pT ln(pT/0.25) = 0.244174;  β = 1: KL(πθ‖πT) = Σ 0.25 ln(0.25/pT) = 0.311199;
    # β = 0.5: M = (0.375, 0.275, 0.2, 0.15), ½KL(πT‖M) + ½KL(πθ‖M) = 0.065080.
    student, teacher = example_logits()
    close(generalized_jsd(student, teacher, beta=0.0), [[0.244174]])
    close(generalized_jsd(student, teacher, beta=1.0), [[0.311199]])
    close(generalized_jsd(student, teacher, beta=0.5), [[0.065080]])


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_full_equals_analytic_kl_on_small_distributions(chunk_size):
    # Random (2, 3, 6) student/teacher, temperature 0.8: β = 0 and β = 1 equal the KLs computed directly,
    # in value and in gradient, for every chunking.
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 3, 6, generator=g, dtype=F64, requires_grad=True)
    t = torch.randn(2, 3, 6, generator=g, dtype=F64)
    ls, lt = torch.log_softmax(s / 0.8, -1), torch.log_softmax(t / 0.8, -1)
    for beta, analytic in ((0.0, (lt.exp() * (lt - ls)).sum(-1)), (1.0, (ls.exp() * (ls - lt)).sum(-1))):
        value = generalized_jsd(s, t, beta=beta, temperature=0.8, chunk_size=chunk_size)
        close(value, analytic, atol=1e-12)
        grad, = torch.autograd.grad(value.sum(), s)
        grad_analytic, = torch.autograd.grad(analytic.sum(), s, retain_graph=True)
        close(grad, grad_analytic, atol=1e-12)


def test_topk_covering_the_whole_vocabulary_is_the_forward_kl():
    # k = V: the tail is empty (pT,tail = 0) and must add nothing (and no NaN gradient): L = KL(πT‖πθ).
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 3, 5, generator=g, dtype=F64, requires_grad=True)
    t = torch.randn(2, 3, 5, generator=g, dtype=F64)
    t_lp, t_ids = topk_logprobs(t, 5)
    loss = topk_forward_kl(s, t_lp, t_ids, tail=True)
    close(loss, generalized_jsd(s, t, beta=0.0), atol=1e-12)
    grad, = torch.autograd.grad(loss.sum(), s)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("tail", [True, False])
def test_topk_chunking_changes_nothing(tail):
    g = torch.Generator().manual_seed(4)
    s = torch.randn(3, 4, 9, generator=g, dtype=F64, requires_grad=True)
    t_lp, t_ids = topk_logprobs(torch.randn(3, 4, 9, generator=g, dtype=F64), 3)
    one = topk_forward_kl(s, t_lp, t_ids, tail=tail, temperature=1.3, chunk_size=1000)
    chunked = topk_forward_kl(s, t_lp, t_ids, tail=tail, temperature=1.3, chunk_size=2)
    close(chunked, one, atol=1e-12)
    g1, = torch.autograd.grad(one.sum(), s)
    g2, = torch.autograd.grad(chunked.sum(), s)
    close(g1, g2, atol=1e-12)


def test_estimators_reject_bad_input():
    s = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, s, beta=1.5)
    with pytest.raises(ValueError, match="teacher_logits_BTV"):
        generalized_jsd(s, torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="k=5"):
        topk_logprobs(s, 5)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        topk_forward_kl(s, torch.zeros(1, 2, 1), torch.full((1, 2, 1), 4))


# ============================================================================ student = teacher


def test_student_equal_to_teacher_gives_zero_advantage_loss_and_gradient():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 5, 7, generator=g, dtype=F64)
    student = logits.clone().requires_grad_(True)
    tokens = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.ones(2, 5, dtype=F64)
    lp = gather_logprobs(student, tokens)
    A = opd_token_advantages(lp.detach(), gather_logprobs(logits, tokens), mask)
    assert torch.equal(A, torch.zeros(2, 5, dtype=F64))
    loss, _ = policy_loss(lp, lp.detach(), A, mask)
    grad, = torch.autograd.grad(loss, student)
    close(loss, 0.0, atol=0)
    close(grad, torch.zeros_like(grad), atol=0)
    t_lp, t_ids = topk_logprobs(logits, 3)
    per_token = {
        "jsd0": generalized_jsd(student, logits, beta=0.0),
        "jsd.5": generalized_jsd(student, logits, beta=0.5),
        "jsd1": generalized_jsd(student, logits, beta=1.0),
        "topk_tail": topk_forward_kl(student, t_lp, t_ids, tail=True),
    }
    for name, value in per_token.items():
        close(value, torch.zeros(2, 5), atol=1e-12)
        grad, = torch.autograd.grad(value.sum(), student)
        close(grad, torch.zeros_like(grad), atol=1e-12)


def test_student_equal_to_teacher_renormalised_topk_is_minus_log_mass():
    # p̃T = pT/Σ_S pT and πθ = pT: L = Σ p̃T(ln pT − ln Σ_S − ln pT) = −ln Σ_S pT = −ln 0.8 = 0.223144.
    _, teacher = example_logits()
    t_lp, t_ids = topk_logprobs(teacher, 2)
    close(topk_forward_kl(teacher.clone(), t_lp, t_ids, tail=False), [[0.223144]])


# ============================================================================ the G-OPD optimum


def gopd_descent(p_teacher, p_ref, lam, steps=200, lr=2.0):
    """Gradient descent on the exact expected G-OPD policy loss over a categorical (one position):
    A(y) = gopd_token_advantages, loss = policy_loss with mask weights πθ(y). Returns πθ."""
    V = len(p_teacher)
    z = torch.zeros(V, dtype=F64, requires_grad=True)
    log_t = torch.tensor(p_teacher, dtype=F64).log()
    log_r = torch.tensor(p_ref, dtype=F64).log()
    for _ in range(steps):
        log_pi = torch.log_softmax(z, 0).view(V, 1)
        A = gopd_token_advantages(log_pi.detach(), log_t.view(V, 1), log_r.view(V, 1), lam)
        loss, _ = policy_loss(log_pi, log_pi.detach(), A, log_pi.detach().exp(), normaliser=1.0)
        grad, = torch.autograd.grad(loss, z)
        with torch.no_grad():
            z -= lr * grad
    return torch.softmax(z.detach(), 0)


@pytest.mark.parametrize("lam, expected", [(0.5, (2 / 3, 1 / 3)), (1.25, (0.849779, 0.150221)),
                                           (2.0, (0.941176, 0.058824))])
def test_gopd_fixed_point_two_outcomes(lam, expected):
    # πT = (0.8, 0.2), πref = (½, ½): π* ∝ πT^λ πref^(1−λ) ∝ (0.8^λ, 0.2^λ) = (4^λ, 1)/(4^λ + 1):
    # λ = 0.5 → (2/3, 1/3); λ = 1.25 → 5.656854/6.656854 = 0.849779; λ = 2 → 16/17 = 0.941176.
    close(gopd_descent([0.8, 0.2], [0.5, 0.5], lam), expected, atol=1e-6)


@pytest.mark.parametrize("lam", [0.3, 1.0, 1.25])
def test_gopd_optimum_on_five_outcomes(lam):
    # log π* = λ log πT + (1−λ) log πref − log Z for arbitrary πT, πref on 5 outcomes.
    g = torch.Generator().manual_seed(6)
    p_t = torch.softmax(torch.randn(5, generator=g, dtype=F64), 0)
    p_r = torch.softmax(torch.randn(5, generator=g, dtype=F64), 0)
    pi = gopd_descent(p_t.tolist(), p_r.tolist(), lam)
    expected = torch.log_softmax(lam * p_t.log() + (1 - lam) * p_r.log(), 0)
    close(pi.log(), expected, atol=1e-6)
