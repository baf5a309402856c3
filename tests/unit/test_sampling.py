"""The sampler's per-step numerics and its decode loop (finish reasons, EOS, stop strings, horizon, compaction),
driven by a scripted stepper so every expected value is known by hand."""

import math

import pytest
import torch

from mentor.models import build_tokenizer
from mentor.sampling import _decode, _draw, sample, sampling_logprobs

# logits = log([1, 2, 3, 4]): softmax is exactly [0.1, 0.2, 0.3, 0.4].
LOGITS = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))


def test_plain_softmax_at_temperature_one():
    expected = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    torch.testing.assert_close(sampling_logprobs(LOGITS), expected, atol=1e-6, rtol=0)


def test_temperature_divides_logits():
    # logits / 2 = log(sqrt(i)) -> p_i = sqrt(i) / (1 + sqrt2 + sqrt3 + 2)
    roots = [math.sqrt(i) for i in (1, 2, 3, 4)]
    expected = torch.log(torch.tensor([[r / sum(roots) for r in roots]]))
    torch.testing.assert_close(sampling_logprobs(LOGITS, temperature=2.0), expected, atol=1e-6, rtol=0)


def test_top_k_keeps_k_largest_and_renormalises():
    # keep 0.3 and 0.4 -> 3/7, 4/7
    out = sampling_logprobs(LOGITS, top_k=2)
    assert torch.isinf(out[0, :2]).all()
    torch.testing.assert_close(out[0, 2:].exp(), torch.tensor([3 / 7, 4 / 7]), atol=1e-6, rtol=0)


def test_top_p_nucleus_rule():
    # ascending probs 0.1, 0.2, 0.3, 0.4 have cumulative mass 0.1, 0.3, 0.6, 1.0.
    # top_p = 0.75 drops tokens with cumulative mass <= 0.25: only the 0.1 token -> [2, 3, 4] / 9.
    out = sampling_logprobs(LOGITS, top_p=0.75)
    assert torch.isinf(out[0, 0])
    torch.testing.assert_close(out[0, 1:].exp(), torch.tensor([2 / 9, 3 / 9, 4 / 9]), atol=1e-6, rtol=0)
    # top_p = 0.65 drops mass <= 0.35: the 0.1 and 0.2 tokens -> [3, 4] / 7.
    out = sampling_logprobs(LOGITS, top_p=0.65)
    torch.testing.assert_close(out[0].exp(), torch.tensor([0, 0, 3 / 7, 4 / 7]), atol=1e-6, rtol=0)
    # a tiny top_p still keeps the most likely token
    torch.testing.assert_close(sampling_logprobs(LOGITS, top_p=0.01)[0].exp(), torch.tensor([0.0, 0, 0, 1]))


def test_vocab_size_cuts_padded_rows():
    # ids >= 3 are padded embedding rows: p = [1, 2, 3] / 6, and id 3 cannot be drawn.
    out = sampling_logprobs(LOGITS, vocab_size=3)
    assert out.shape == (1, 3)
    torch.testing.assert_close(out.exp(), torch.tensor([[1 / 6, 2 / 6, 3 / 6]]), atol=1e-6, rtol=0)
    big_pad = torch.tensor([[0.0, 0.0, 0.0, 100.0]])  # the padded row would win every draw if not cut
    ids, _ = _draw(big_pad.expand(64, 4), greedy=False, temperature=1.0, top_k=0, top_p=1.0, vocab_size=3,
                   generator=torch.Generator().manual_seed(0))
    assert ids.max() < 3


def test_greedy_takes_argmax_with_temperature_one_logprob():
    ids, lp = _draw(LOGITS, greedy=True, temperature=0.3, top_k=1, top_p=0.5, vocab_size=None, generator=None)
    assert ids.tolist() == [3]
    torch.testing.assert_close(lp, torch.tensor([math.log(0.4)]), atol=1e-6, rtol=0)


def test_draw_frequencies_follow_the_distribution():
    # 20000 draws from [0.1, 0.2, 0.3, 0.4]: each frequency within 4 standard errors (<= 0.014).
    ids, lp = _draw(LOGITS.expand(20000, 4), greedy=False, temperature=1.0, top_k=0, top_p=1.0, vocab_size=None,
                    generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(ids, minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.014, rtol=0)
    torch.testing.assert_close(lp, torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))[ids], atol=1e-6, rtol=0)


class ScriptedStepper:
    """Row r emits scripts[r][t] at step t with certainty (logit 0 vs -1e9 elsewhere); records compactions."""

    def __init__(self, scripts, vocab):
        self.scripts, self.vocab, self.device = scripts, vocab, torch.device("cpu")
        self.selections = []

    def _logits(self):
        out = torch.full((len(self.rows), self.vocab), -1e9)
        for a, r in enumerate(self.rows):
            out[a, self.scripts[r][self.t]] = 0.0
        return out

    def prefill(self, input_ids_BP, mask_BP, max_len):
        self.rows, self.t = list(range(len(input_ids_BP))), 0
        self.prompt_lengths = mask_BP.sum(-1).tolist()
        return self._logits()

    def step(self, ids_B):
        assert ids_B.tolist() == [self.scripts[r][self.t] for r in self.rows]  # fed back what was drawn
        self.t += 1
        return self._logits()

    def select(self, keep_K):
        self.selections.append(keep_K.tolist())
        self.rows = [self.rows[a] for a in keep_K.tolist()]


def decode(scripts, *, eos=(0,), limit=6, cut="length", stop_strings=(), tokenizer=None):
    stepper = ScriptedStepper(scripts, vocab=110)
    prompts = [[5] * (i + 1) for i in range(len(scripts))]  # different lengths: left padding
    outs = _decode(stepper, prompts, eos_ids=list(eos), pad_token_id=0, limit=limit, cut_reason=cut, greedy=False,
                   temperature=1.0, top_k=0, top_p=1.0, vocab_size=None, generator=torch.Generator().manual_seed(0),
                   stop_strings=list(stop_strings), tokenizer=tokenizer)
    return outs, stepper


def test_eos_is_kept_and_rows_stop_independently():
    scripts = [[7, 8, 0, 9, 9, 9], [7, 7, 7, 7, 7, 7], [0, 9, 9, 9, 9, 9]]
    outs, stepper = decode(scripts)
    assert stepper.prompt_lengths == [1, 2, 3]
    assert [o.completion_ids for o in outs] == [[7, 8, 0], [7] * 6, [0]]
    assert [o.finish_reason for o in outs] == ["stop", "length", "stop"]
    assert all(o.logprobs == [0.0] * len(o.completion_ids) for o in outs)  # certain tokens: log 1 = 0


def test_horizon_cut_reason_and_stop_on_last_token():
    outs, _ = decode([[7, 7, 7, 7], [7, 7, 0, 7]], limit=3, cut="horizon")
    assert [o.completion_ids for o in outs] == [[7, 7, 7], [7, 7, 0]]
    assert [o.finish_reason for o in outs] == ["horizon", "stop"]


def test_prefix_rollouts_never_pass_the_horizon():
    # specs/adwin.md §4.1: a model that would emit 50 tokens without EOS, H = 16 → 16 tokens each, "horizon";
    # with EOS as the 10th token → 10 tokens, "stop"
    outs, _ = decode([[7] * 50, [7] * 50], limit=16, cut="horizon")
    assert [(len(o.completion_ids), o.finish_reason) for o in outs] == [(16, "horizon")] * 2
    outs, _ = decode([[7] * 9 + [0] + [7] * 40], limit=16, cut="horizon")
    assert (len(outs[0].completion_ids), outs[0].finish_reason) == (10, "stop")


def test_several_eos_ids_and_no_eos():
    outs, _ = decode([[7, 3, 9], [4, 9, 9]], eos=(3, 4), limit=3)
    assert [(o.completion_ids, o.finish_reason) for o in outs] == [([7, 3], "stop"), ([4], "stop")]
    outs, _ = decode([[0, 0, 0]], eos=(), limit=3)  # an empty EOS list never stops on a token
    assert (outs[0].completion_ids, outs[0].finish_reason) == ([0, 0, 0], "length")


def test_compaction_keeps_rows_aligned():
    # 8 rows; rows 1 and 4 stop at step 0 (2/8 >= 1/8: compact), row 6 at step 2 (1/6 >= 1/8: compact again).
    scripts = [[10 + r] * 6 for r in range(8)]
    scripts[1][0] = scripts[4][0] = 0
    scripts[6][2] = 0
    outs, stepper = decode(scripts)
    assert stepper.selections == [[0, 2, 3, 5, 6, 7], [0, 1, 2, 3, 5]]
    for r, o in enumerate(outs):
        expected = {1: [0], 4: [0], 6: [16, 16, 0]}.get(r, [10 + r] * 6)
        assert o.completion_ids == expected, r


def test_stop_string_stops_after_the_completing_token():
    tok = build_tokenizer()
    ids = tok("ab\ncd##", add_special_tokens=False)["input_ids"]
    other = tok("xy#z###", add_special_tokens=False)["input_ids"]
    outs, _ = decode([ids, other], eos=(tok.eos_token_id,), limit=7, stop_strings=["\nc", "#z"], tokenizer=tok)
    assert [tok.decode(o.completion_ids) for o in outs] == ["ab\nc", "xy#z"]
    assert [o.finish_reason for o in outs] == ["stop", "stop"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_k=-2), "top_k"),
    (dict(horizon=0), "horizon"),
    (dict(stop_strings=["x"]), "tokenizer"),
    (dict(batch_size=0), "batch_size"),
    (dict(engine="vllm"), "engine"),
])
def test_bad_arguments_name_what_is_wrong(kwargs, message):
    args = dict(eos_token_id=1, pad_token_id=0, max_new_tokens=4) | kwargs
    with pytest.raises(ValueError, match=message):
        sample(torch.nn.Linear(1, 1), [[3, 4]], **args)


def test_empty_prompt_is_rejected_with_its_index():
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        sample(torch.nn.Linear(1, 1), [[3], []], eos_token_id=1, pad_token_id=0, max_new_tokens=4)


def test_inverse_cdf_draw_used_on_accelerators():
    """`_multinomial`'s accelerator path (a CPU generator's uniforms, the lookup on the device). probs (0.1, 0, 0.2,
    0.3, 0.4) have cdf (0.1, 0.1, 0.3, 0.6, 1.0): u = 0.05 → 0, u = 0.1 → 2 (the zero-probability token 1 is
    skipped), 0.3 → 3, 0.65 → 4, 0.999 → 4; unnormalised rows (×2) give the same tokens."""
    from mentor.sampling import inverse_cdf_draw

    probs = torch.tensor([[0.1, 0.0, 0.2, 0.3, 0.4]]).expand(5, 5)
    u = torch.tensor([0.05, 0.1, 0.3, 0.65, 0.999])
    assert inverse_cdf_draw(probs, u).tolist() == [0, 2, 3, 4, 4]
    assert inverse_cdf_draw(2 * probs, u).tolist() == [0, 2, 3, 4, 4]
