"""Gradient accumulation and data parallelism never change the gradient of the same batch
(specs/grpo_family.md §2.3, §4.2), and the on-policy clipped loss is REINFORCE.

A linear "policy" (logits = features @ W.T) in float64 replaces a language model: the invariances are
properties of how losses are normalised and summed, not of the network."""

import gc
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mentor.losses import AGGREGATIONS, gather_logprobs, group_advantages, loss_normaliser, policy_loss

F64 = torch.float64
N_SEQ, T, V, D = 8, 7, 9, 6
L_NORM = 10  # max_new_tokens for seq_mean_token_sum_norm


def make_batch(seed=0):
    """8 sequences (2 prompts × 4 completions) of lengths 1..7 with off-policy old log-probs (so clipping,
    dual-clip and TIS are all active), sampler and reference log-probs, and GRPO advantages."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, D, generator=g, dtype=F64)
    feats = torch.randn(N_SEQ, T, D, generator=g, dtype=F64)
    tokens = torch.randint(0, V, (N_SEQ, T), generator=g)
    lengths = torch.tensor([7, 1, 4, 6, 2, 7, 3, 5])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(F64)
    with torch.no_grad():
        lp = gather_logprobs(feats @ W.T, tokens)
    old = lp + 0.5 * torch.randn(N_SEQ, T, generator=g, dtype=F64)
    sampler = old + 0.5 * torch.randn(N_SEQ, T, generator=g, dtype=F64)
    ref = lp + 0.3 * torch.randn(N_SEQ, T, generator=g, dtype=F64)
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 1.0, 0.0, 0.0]], dtype=F64)
    A = group_advantages(rewards, "grpo").view(-1)
    return dict(W=W, feats=feats, tokens=tokens, mask=mask, old=old, sampler=sampler, ref=ref, A=A)


class Policy(torch.nn.Module):
    def __init__(self, W):
        super().__init__()
        self.W = torch.nn.Parameter(W.clone())

    def forward(self, feats):
        return feats @ self.W.T


def micro_loss(policy, batch, idx, mode, normaliser, on_policy=False):
    """The full policy loss (clip-higher, dual-clip, TIS, k3 KL, entropy bonus) of sequences `idx`, trimmed
    to their own longest length as a real micro-batch would be padded."""
    length = int(batch["mask"][idx].sum(dim=1).max())
    sl = (idx, slice(0, length))
    lp, ent = gather_logprobs(policy(batch["feats"][sl]), batch["tokens"][sl], with_entropy=True)
    if on_policy:
        return policy_loss(lp, lp.detach(), batch["A"][idx], batch["mask"][sl], aggregation=mode,
                           normaliser=normaliser, L_norm=L_NORM)[0]
    loss, _ = policy_loss(
        lp, batch["old"][sl], batch["A"][idx], batch["mask"][sl], clip_eps_low=0.2, clip_eps_high=0.28,
        dual_clip_c=3.0, sampler_logprobs=batch["sampler"][sl], tis_cap=2.0, ref_logprobs=batch["ref"][sl],
        kl_coef=0.05, kl_estimator="k3", entropy=ent, entropy_coef=0.01, aggregation=mode,
        normaliser=normaliser, L_norm=L_NORM)
    return loss


MICRO_BATCHES = [torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]), torch.tensor([6, 7])]


def accumulated_grad(batch, mode, normaliser_of, micro_batches=MICRO_BATCHES, scale=1.0):
    policy = Policy(batch["W"])
    total = 0.0
    for idx in micro_batches:
        loss = micro_loss(policy, batch, idx, mode, normaliser_of(idx)) * scale
        loss.backward()  # gradients are summed across micro-batches
        total += loss.item()
    return policy.W.grad, total


def one_batch(batch, mode, on_policy=False):
    """Loss and gradient of all 8 sequences as one micro-batch (local normaliser = global normaliser)."""
    policy = Policy(batch["W"])
    loss = micro_loss(policy, batch, torch.arange(N_SEQ), mode, None, on_policy)
    grad, = torch.autograd.grad(loss, policy.W)
    return loss, grad


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_four_micro_batches_give_the_one_batch_gradient(mode):
    batch = make_batch()
    full, full_grad = one_batch(batch, mode)
    norm = loss_normaliser([batch["mask"][idx] for idx in MICRO_BATCHES], mode, L_NORM)
    grad, total = accumulated_grad(batch, mode, lambda idx: norm)
    torch.testing.assert_close(grad, full_grad, atol=1e-12, rtol=0)
    assert abs(total - full.item()) < 1e-12
    assert full_grad.abs().max() > 1e-2  # a real gradient, not two zeros


def test_naive_per_micro_batch_mean_is_wrong_for_token_mean():
    # "mean per micro-batch, then average" weights the tokens of short micro-batches more: it must differ.
    batch = make_batch()
    _, full_grad = one_batch(batch, "token_mean")
    naive_grad, _ = accumulated_grad(batch, "token_mean", lambda idx: None, scale=1 / len(MICRO_BATCHES))
    assert (naive_grad - full_grad).abs().max() > 1e-3


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_on_policy_clipped_gradient_is_reinforce(mode):
    # ℓold = ℓθ (detached), no TIS, β = 0: ρ = 1 inside the clip range, so ∇ loss = −Σ coef_i·A_i·∇ℓθ / N,
    # coef_i = 1/|y_i| for seq_mean_token_mean, else 1; N = N_tok, N_seq or N_seq·L_norm.
    batch = make_batch(seed=1)
    _, grad = one_batch(batch, mode, on_policy=True)
    mask = batch["mask"]
    lengths = mask.sum(dim=1)
    coef = 1.0 / lengths if mode == "seq_mean_token_mean" else torch.ones(N_SEQ, dtype=F64)
    N = {"token_mean": lengths.sum(), "seq_mean_token_mean": N_SEQ, "seq_mean_token_sum": N_SEQ,
         "seq_mean_token_sum_norm": N_SEQ * L_NORM}[mode]
    W = batch["W"].clone().requires_grad_(True)
    lp = gather_logprobs(batch["feats"] @ W.T, batch["tokens"])
    reinforce = -(coef[:, None] * batch["A"][:, None] * lp * mask).sum() / N
    expected, = torch.autograd.grad(reinforce, W)
    torch.testing.assert_close(grad, expected, atol=1e-12, rtol=0)


# ============================================================================ 2 ranks × 2 micro-batches


def _ddp_worker(rank, world_size, init_file, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        batch = make_batch()
        mine = MICRO_BATCHES[2 * rank: 2 * rank + 2]  # rank 0: sequences 0–3, rank 1: 4–7
        grads = {}
        for mode in AGGREGATIONS:
            model = torch.nn.parallel.DistributedDataParallel(Policy(batch["W"]))
            local = loss_normaliser([batch["mask"][idx] for idx in mine], mode, L_NORM)
            dist.all_reduce(local, op=dist.ReduceOp.SUM)  # one all-reduce per optimizer step
            normaliser = local / world_size  # DDP averages gradients over the ranks
            with model.no_sync():
                micro_loss(model, batch, mine[0], mode, normaliser).backward()
            micro_loss(model, batch, mine[1], mode, normaliser).backward()  # gradients all-reduced here
            grads[mode] = model.module.W.grad.clone()
            # free DDP's reducer (it holds the process group) while both ranks are alive: a reducer freed after
            # destroy_process_group can hang in gloo's thread join at interpreter exit (seen once in CI)
            del model
            gc.collect()
        if rank == 0:
            torch.save(grads, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)  # a hung gloo teardown must fail the test, not stall the suite
def test_two_ranks_two_micro_batches_give_the_one_batch_gradient():
    # DDP (gloo, 2 processes), each rank 2 micro-batches of 2 sequences, for all four aggregation modes.
    batch = make_batch()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grads.pt")
        mp.start_processes(_ddp_worker, args=(2, os.path.join(tmp, "init"), out), nprocs=2, join=True,
                           start_method="fork")  # fork: the children need not import torch again
        ddp_grads = torch.load(out)
    for mode in AGGREGATIONS:
        torch.testing.assert_close(ddp_grads[mode], one_batch(batch, mode)[1], atol=1e-12, rtol=0)
