"""Both sampler engines on real (random, tiny) HF models: greedy tokens equal `model.generate`, recorded
log-probs equal a teacher-forced forward, left padding, padded vocabularies, compaction, seeds, the
`HFSampler` component, and the fast path on Qwen2 (attention biases, GQA) and Qwen3 (q/k norms) layouts."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, \
    Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from mentor.config import SamplingConfig
from mentor.models import build_tiny_model, build_tokenizer
from mentor.sampling import HFSampler, fast_path_supported, sample, sampling_logprobs
from mentor.types import Prompt

TOK = build_tokenizer()
TEXTS = ["12+34=", "7*8=", "hello world, x", "a", "(3+4)*5-6/2="]  # 1 to 12 tokens: left padding
PROMPTS = [TOK(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
ENGINES = ["fast", "hf"]


def sharpen(model, factor=6.0, seed=0):
    """Scale a random model's weights so its next-token distributions are peaked: greedy argmax margins are then
    far above float rounding, and samples are not near-uniform noise."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(factor)
    return model.eval()


@pytest.fixture(scope="module")
def llama():
    return sharpen(build_tiny_model(TOK, "100k", seed=1))


def small_config(cls, **extra):
    return cls(vocab_size=len(TOK), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, head_dim=16,
               pad_token_id=TOK.pad_token_id, eos_token_id=TOK.eos_token_id, **extra)


def hf_greedy(model, prompts, max_new_tokens, eos):
    """`generate(do_sample=False)` on a left-padded batch; each row cut after its first EOS."""
    enc = TOK.pad({"input_ids": prompts}, return_tensors="pt")
    out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=TOK.pad_token_id,
                         eos_token_id=eos, top_k=None, top_p=None, temperature=None)
    rows = out[:, enc["input_ids"].shape[1]:].tolist()
    return [r[:r.index(eos) + 1] if eos in r else r for r in rows]


def teacher_forced_logprobs(model, prompts, outs, temperature=1.0, vocab_size=None, **trunc):
    """Reference: one forward over the right-padded rows prompt + completion (right padding cannot change a causal
    model's earlier positions, and every row starts at position 0), then log_softmax(logits / T) at each
    completion token. Returns one tensor per row."""
    seqs = [p + o.completion_ids for p, o in zip(prompts, outs)]
    ids = torch.tensor([s + [0] * (max(map(len, seqs)) - len(s)) for s in seqs])
    with torch.no_grad():
        logits = model(ids).logits
    refs = []
    for row, (p, o) in enumerate(zip(prompts, outs)):
        logp = sampling_logprobs(logits[row, len(p) - 1:len(p) - 1 + len(o.completion_ids)],
                                 temperature=temperature, vocab_size=vocab_size, **trunc)
        refs.append(logp.gather(1, torch.tensor(o.completion_ids)[:, None])[:, 0])
    return refs


def assert_logprobs_match(outs, refs):
    for o, ref in zip(outs, refs):
        torch.testing.assert_close(torch.tensor(o.logprobs), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_equals_generate_token_for_token(llama, engine):
    expected = hf_greedy(llama, PROMPTS, 24, TOK.eos_token_id)
    outs = sample(llama, PROMPTS, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id, max_new_tokens=24,
                  greedy=True, engine=engine)
    assert [o.completion_ids for o in outs] == expected
    assert_logprobs_match(outs, teacher_forced_logprobs(llama, PROMPTS, outs))  # temperature-1 log-probs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("trunc", [{}, {"top_k": 5}, {"top_p": 0.8}])
def test_sampled_logprobs_equal_teacher_forced_forward(llama, engine, trunc):
    prompts = PROMPTS * 4  # 20 rows, so EOS-stopped rows get compacted away mid-batch
    eos = [TOK.eos_token_id] + TOK("0123", add_special_tokens=False)["input_ids"]  # frequent stops
    outs = sample(llama, prompts, eos_token_id=eos, pad_token_id=TOK.pad_token_id, max_new_tokens=20,
                  temperature=0.7, vocab_size=len(TOK), generator=torch.Generator().manual_seed(3), engine=engine,
                  **trunc)
    reasons = {o.finish_reason for o in outs}
    assert reasons == {"stop", "length"}
    for o in outs:
        assert len(o.logprobs) == len(o.completion_ids) >= 1
        assert (o.completion_ids[-1] in eos) == (o.finish_reason == "stop")
        assert not any(i in eos for i in o.completion_ids[:-1])
    assert_logprobs_match(outs, teacher_forced_logprobs(llama, prompts, outs, temperature=0.7, vocab_size=len(TOK),
                                                        **trunc))


def test_engines_draw_the_same_samples_from_the_same_seed(llama):
    kw = dict(eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id, max_new_tokens=16, temperature=1.3)
    fast = sample(llama, PROMPTS, generator=torch.Generator().manual_seed(7), engine="fast", **kw)
    again = sample(llama, PROMPTS, generator=torch.Generator().manual_seed(7), engine="fast", **kw)
    hf = sample(llama, PROMPTS, generator=torch.Generator().manual_seed(7), engine="hf", **kw)
    other = sample(llama, PROMPTS, generator=torch.Generator().manual_seed(8), engine="fast", **kw)
    assert fast == again
    assert [o.completion_ids for o in fast] == [o.completion_ids for o in hf]
    assert [o.completion_ids for o in fast] != [o.completion_ids for o in other]


@pytest.mark.parametrize("engine", ENGINES)
def test_padded_embedding_rows_are_never_sampled(engine):
    # A model whose output ignores its input: every embedding row is ones and the blocks add nothing, so the
    # final hidden state is the norm of ones = ones. lm_head rows of the real ids are 0 (logit 0); the 8 padded
    # rows give logit 20, so without the vocabulary cut nearly every draw would be padded. With it, each draw
    # is uniform over the real ids: logprob = -log(len(TOK)) for every token.
    V = len(TOK)
    cfg = LlamaConfig(vocab_size=V + 8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.layers[0].self_attn.o_proj.weight.zero_()
        model.model.layers[0].mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[V:] = 20.0 / 32
    outs = sample(model, PROMPTS, eos_token_id=[], pad_token_id=0, max_new_tokens=8, vocab_size=V,
                  generator=torch.Generator().manual_seed(0), engine=engine)
    assert max(max(o.completion_ids) for o in outs) < V
    lp = torch.tensor([o.logprobs for o in outs])
    torch.testing.assert_close(lp, torch.full_like(lp, -math.log(V)), atol=1e-5, rtol=0)
    unmasked = sample(model, PROMPTS, eos_token_id=[], pad_token_id=0, max_new_tokens=8, engine=engine,
                      generator=torch.Generator().manual_seed(0))
    assert min(min(o.completion_ids) for o in unmasked) >= V  # the trap is real: without the cut, all padded


@pytest.mark.parametrize("engine", ENGINES)
def test_horizon_and_length_cuts(llama, engine):
    kw = dict(eos_token_id=[], pad_token_id=TOK.pad_token_id, max_new_tokens=10, engine=engine,
              generator=torch.Generator().manual_seed(0))
    for horizon, length, reason in [(4, 4, "horizon"), (10, 10, "length"), (25, 10, "length"), (None, 10, "length")]:
        outs = sample(llama, PROMPTS, horizon=horizon, **kw)
        assert {(len(o.completion_ids), o.finish_reason) for o in outs} == {(length, reason)}, horizon


@pytest.mark.parametrize("make", [
    lambda: Qwen2ForCausalLM(small_config(Qwen2Config)),  # q/k/v biases, 2 query heads per kv head
    lambda: Qwen3ForCausalLM(small_config(Qwen3Config)),  # per-head q/k RMSNorm before RoPE
    lambda: LlamaForCausalLM(small_config(LlamaConfig, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                           "rope_theta": 500.0})),
], ids=["qwen2", "qwen3", "llama-linear-rope"])
def test_fast_path_matches_generate_on_other_layouts(make):
    torch.manual_seed(0)
    model = sharpen(make(), factor=4.0)
    assert fast_path_supported(model) == (True, "")
    expected = hf_greedy(model, PROMPTS, 16, TOK.eos_token_id)
    outs = sample(model, PROMPTS, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id, max_new_tokens=16,
                  greedy=True, engine="fast")
    assert [o.completion_ids for o in outs] == expected
    sampled = sample(model, PROMPTS, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id,
                     max_new_tokens=16, generator=torch.Generator().manual_seed(1), engine="fast")
    assert_logprobs_match(sampled, teacher_forced_logprobs(model, PROMPTS, sampled))


def test_unsupported_layouts_fall_back_or_fail_clearly():
    mistral = MistralForCausalLM(small_config(MistralConfig, sliding_window=8)).eval()
    ok, why = fast_path_supported(mistral, max_len=40)
    assert not ok and "sliding-window" in why
    assert fast_path_supported(mistral, max_len=8) == (True, "")
    with pytest.raises(ValueError, match="engine='fast' cannot run this model: sliding-window"):
        sample(mistral, PROMPTS, eos_token_id=1, pad_token_id=0, max_new_tokens=30, engine="fast")
    # "auto" falls back to the generic engine, which honours the window: same tokens as generate
    expected = hf_greedy(mistral, PROMPTS, 30, TOK.eos_token_id)
    outs = sample(mistral, PROMPTS, eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id,
                  max_new_tokens=30, greedy=True)
    assert [o.completion_ids for o in outs] == expected


def test_batch_size_chunks_give_the_same_greedy_outputs(llama):
    kw = dict(eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id, max_new_tokens=12, greedy=True)
    small, whole = sample(llama, PROMPTS, batch_size=2, **kw), sample(llama, PROMPTS, batch_size=256, **kw)
    assert [o.completion_ids for o in small] == [o.completion_ids for o in whole]
    for a, b in zip(small, whole):  # matmul rounding depends on the batch shape
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)


def test_hf_sampler_returns_rollouts(llama):
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=12, stop=["\n"], horizon=None, batch_size=4)
    sampler = HFSampler(llama, TOK, cfg)
    prompts = [Prompt(id="p0", text="12+34="), Prompt(id="p1", messages=({"role": "user", "content": "hi"},))]
    groups = sampler.generate(prompts, n=3, generator=torch.Generator().manual_seed(0), template="Q: {prompt}\nA:")
    assert [len(g) for g in groups] == [3, 3]
    assert groups[0][0].prompt_ids == tuple(TOK("Q: 12+34=\nA:", add_special_tokens=False)["input_ids"])
    chat = TOK.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert groups[1][0].prompt_ids == tuple(TOK(chat, add_special_tokens=False)["input_ids"])
    for p, group in zip(prompts, groups):
        for r in group:
            assert r.prompt_id == p.id and r.horizon is None
            assert len(r.logprobs) == r.length >= 1
            assert r.text == TOK.decode(list(r.completion_ids), skip_special_tokens=True)
            assert r.finish_reason in ("stop", "length")
            assert (r.finish_reason == "stop") == ("\n" in r.text or r.completion_ids[-1] == TOK.eos_token_id)
    cut = sampler.generate(prompts, n=2, horizon=3, generator=torch.Generator().manual_seed(0))
    for r in (r for g in cut for r in g):
        assert r.horizon == 3 and (r.length, r.finish_reason) in {(3, "horizon")} | {(k, "stop") for k in (1, 2, 3)}
