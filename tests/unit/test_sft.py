import math

import pytest
import torch

from mentor import sft
from mentor.config import OptimConfig
from mentor.train import lr_factor


def test_collate_masks_only_completion_targets():
    # prompt (5, 6, 7), completion (8, 9) + EOS 1. Position t predicts token t+1, so targets 8, 9, 1 sit at
    # positions 2, 3, 4 of the shifted mask; the second row is shorter and padded with 0.
    ex = [sft.SFTExample((5, 6, 7, 8, 9, 1), 3), sft.SFTExample((5, 8, 1), 1)]
    b = sft.collate(ex, pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9, 1], [5, 8, 1, 0, 0, 0]]
    assert b.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert b.loss_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert b.num_loss_tokens == 5


def test_micro_batching_gives_the_same_gradient(tokenizer):
    from mentor.models import build_tiny_model

    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, "100k").double()
    exs = [sft.SFTExample(tuple(torch.randint(7, 100, (n,)).tolist()) + (1,), p) for n, p in [(9, 3), (5, 2), (12, 6), (7, 4)]]

    def grads(mbs):
        model.zero_grad()
        n = sum(mb.num_loss_tokens for mb in mbs)
        for mb in mbs:
            loss, _ = sft.sft_loss(model, mb, n)
            loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    one = grads(sft.micro_batches(exs, 4, 0, bucket=False))
    many = grads(sft.micro_batches(exs, 1, 0, bucket=True))
    assert torch.allclose(one, many, atol=1e-10)


def test_sft_loss_is_mean_token_nll(tokenizer):
    from mentor.models import build_tiny_model

    model = build_tiny_model(tokenizer, "100k")
    mb = sft.collate([sft.SFTExample((5, 6, 7, 8, 9, 1), 3)], 0)
    loss, _ = sft.sft_loss(model, mb, mb.num_loss_tokens)
    logp = torch.log_softmax(model(mb.input_ids).logits[0, :-1], -1)
    expected = -(logp[2, 8] + logp[3, 9] + logp[4, 1]) / 3
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_data_cursor_covers_each_example_once_per_epoch_and_resumes():
    c = sft.DataCursor()
    first = c.next_batch(10, 4, seed=3) + c.next_batch(10, 4, seed=3)
    state = (c.epoch, c.index)
    rest = c.next_batch(10, 4, seed=3)  # 2 from epoch 0, 2 from epoch 1
    assert sorted(first + rest[:2]) == list(range(10))
    c2 = sft.DataCursor(*state)
    assert c2.next_batch(10, 4, seed=3) == rest


def test_lr_schedule_values():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)  # warmup: (0+1)/10
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(10, 110, cfg) == pytest.approx(1.0)  # cosine starts at 1
    assert lr_factor(60, 110, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos(pi/2) = 0
    assert lr_factor(110, 110, cfg) == pytest.approx(0.1)
    lin = OptimConfig(lr=1.0, schedule="linear", min_lr_ratio=0.0)
    assert lr_factor(25, 100, lin) == pytest.approx(0.75)
    assert math.isclose(lr_factor(5, 100, OptimConfig(schedule="constant")), 1.0)
