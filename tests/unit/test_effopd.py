"""EffOPD controller (specs/effopd.md §4.1): trigger, candidates, greedy acceptance, bit-exact restore, anchor
moves, parameter filter, optimizer untouched, fp32 arithmetic for bf16 weights, state round trip, config errors.

The controller is driven through its real `after_step` on a toy module whose validation score is scripted or a
quadratic of the weights (`validate` overridden); the sampler-backed validation runs in
tests/integration/test_effopd_run.py."""

import copy
from types import SimpleNamespace

import pytest
import torch

from mentor.config import ConfigError, TrainConfig
from mentor.controllers import CONTROLLERS, build_controllers
from mentor.controllers.effopd import (EffOPDController, accepts, argmax_agreement, crossed_power_of_two,
                                       extrapolate, greedy_accept, is_power_of_two, matches_filter)
from mentor.types import Prompt

assert CONTROLLERS["effopd"] is EffOPDController


def toy_model(w, embed=(0.25, -1.0), dtype=torch.float32):
    """Two parameters: `mlp_w` (selected by the default filter: contains "mlp") and `embed_tokens` (never selected)."""
    return torch.nn.ParameterDict({"mlp_w": torch.nn.Parameter(torch.tensor(w, dtype=dtype)),
                                   "embed_tokens": torch.nn.Parameter(torch.tensor(embed, dtype=dtype))})


def make_ctx(model, tmp_path, stepper=None):
    prompts = [Prompt(id=f"p{i}", text=f"{i}+1=", answer=str(i + 1), verifier="exact") for i in range(8)]
    return SimpleNamespace(model=model, optimizer=None, stepper=stepper or SimpleNamespace(), tokenizer=None,
                           train_prompts=prompts, eval_prompts=[], run_dir=tmp_path, device=torch.device("cpu"))


def make_cfg(**effopd):
    cfg = TrainConfig()
    cfg.controllers = ["effopd"]
    cfg.controller_args = {"effopd": {"val_size": 4, **effopd}}
    return cfg


class Scripted(EffOPDController):
    """`validate` returns score_fn(weights of mlp_w) and records the weights it was called at."""

    def __init__(self, cfg, ctx, score_fn):
        super().__init__(cfg, ctx)
        self.score_fn, self.seen = score_fn, []

    def validate(self, ctx):
        w = ctx.model["mlp_w"].detach().clone()
        self.seen.append(w)
        return float(self.score_fn(w)), 7, 0.0


def from_list(values):
    it = iter(values)
    return lambda w: next(it)


def set_weights(model, w):
    with torch.no_grad():
        model["mlp_w"].copy_(torch.as_tensor(w, dtype=model["mlp_w"].dtype))


# ----------------------------------------------------------------------------- pure functions

def test_trigger_is_power_of_two_of_the_optimizer_step():
    assert [t for t in range(1, 18) if is_power_of_two(t)] == [1, 2, 4, 8, 16]
    # one optimizer step per training step: crossing = landing on a power of two
    assert [t for t in range(1, 18) if crossed_power_of_two(t - 1, t)] == [1, 2, 4, 8, 16]
    # 3 optimizer steps per training step: counts 3, 6, 9, ..., 36 contain 1/2 (in (0,3]), 4, 8, 16, 32
    assert [t for t in range(3, 37, 3) if crossed_power_of_two(t - 3, t)] == [3, 6, 9, 18, 33]
    assert not crossed_power_of_two(4, 4) and not crossed_power_of_two(0, 0)


def test_candidates_are_3_5_7_9_11_times_delta_from_the_anchor():
    # anchor 0, W_t = 1: candidate k = W_t + 2k(W_t - anchor) = 1 + 2k
    w_t, anchor = torch.tensor([1.0]), torch.tensor([0.0])
    assert [float(extrapolate(w_t, anchor, 2 * k)) for k in range(1, 6)] == [3.0, 5.0, 7.0, 9.0, 11.0]


def test_greedy_accept_strict_stops_at_a_tie_and_geq_goes_on():
    scores = [0.6, 0.7, 0.7, 0.8, 0.1]
    assert greedy_accept(0.5, lambda k: scores[k - 1], 5, "strict") == (2, [0.6, 0.7, 0.7])
    assert greedy_accept(0.5, lambda k: scores[k - 1], 5, "geq") == (4, scores)
    assert greedy_accept(0.5, lambda k: scores[k - 1], 1, "geq") == (1, [0.6])  # K bounds the search
    assert accepts(0.7, 0.7, "geq") and not accepts(0.7, 0.7, "strict")
    with pytest.raises(ValueError, match="accept rule 'gt'"):
        accepts(1.0, 0.0, "gt")


def test_param_filter_on_qwen2_names():
    names = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
             "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
             "model.layers.0.mlp.down_proj.weight", "model.layers.0.post_attention_layernorm.weight",
             "model.layers.0.self_attn.q_norm.weight"]
    default = [n for n in names if matches_filter(n, "default")]
    assert default == names[4:]  # the code's substring match also catches post_attention_layernorm and q_norm
    assert [n for n in names if matches_filter(n, "linear_only")] == names[4:7]
    assert [n for n in names if matches_filter(n, ["down_proj"])] == ["model.layers.0.mlp.down_proj.weight"]
    assert [n for n in names if matches_filter(n, r"re:layers\.0\.self_attn\.q_proj\.weight$")] == [names[4]]
    with pytest.raises(ValueError, match="param_filter 'attention_only'"):
        matches_filter("x", "attention_only")


def test_argmax_agreement_counts_masked_positions():
    # argmax student per position: 0, 1, 1; teacher: 0, 2, 1; mask keeps positions 0 and 1 -> 1 of 2 agree
    s = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 5.0, 0.0]]])
    t = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 4.0], [0.0, 1.0, 0.0]]])
    assert argmax_agreement(s, t, torch.tensor([[1.0, 1.0, 0.0]])) == (1.0, 2.0)


def test_bf16_candidates_use_fp32_arithmetic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4096, generator=g).to(torch.bfloat16)
    a = (w.float() - 0.01 * torch.randn(4096, generator=g)).to(torch.bfloat16)
    for coef in (2.0, 4.0, 10.0):
        ours = extrapolate(w, a, coef)
        w64, a64 = w.double(), a.double()
        reference = (w64 + coef * (w64 - a64)).to(torch.bfloat16)  # exact arithmetic, one rounding to bf16
        assert ours.dtype == torch.bfloat16 and torch.equal(ours, reference)
        naive = w + coef * (w - a)  # bf16 arithmetic rounds the difference and the product
        assert (naive != reference).any()


# ----------------------------------------------------------------------------- the controller

def test_quadratic_toy_accepts_up_to_the_optimum_then_restores(tmp_path):
    # V(w) = -||w - 6.5u||^2 with u = (1, -2), anchor W_0 = 0, after step 1 W_1 = u (Δ = u).
    # V along the line at c·u: -(c - 6.5)^2·5: c = 1: -151.25, 3: -61.25, 5: -11.25, 7: -1.25, 9: -31.25
    # -> k = 1, 2, 3 accepted, k = 4 fails: weights 7u, anchor 7u.
    u = torch.tensor([1.0, -2.0])
    model = toy_model([0.0, 0.0])
    ctx = make_ctx(model, tmp_path)
    c = Scripted(make_cfg(), ctx, lambda w: -float((w - 6.5 * u).pow(2).sum()))
    set_weights(model, u)
    m = c.after_step(1, ctx, {})
    assert m["effopd/accepted_k"] == 3 and m["effopd/candidates_evaluated"] == 4
    assert [m[f"effopd/score_k{k}"] for k in range(1, 5)] == [-61.25, -11.25, -1.25, -31.25]
    assert m["effopd/v0"] == -151.25 and m["effopd/v_acc"] == -1.25
    assert m["effopd/delta_norm"] == pytest.approx(5 ** 0.5, abs=1e-6)
    assert m["effopd/val_tokens"] == 5 * 7 and m["effopd/searches_accepted"] == 1
    assert torch.equal(model["mlp_w"].detach(), 7 * u) and torch.equal(c.anchor["mlp_w"], 7 * u)
    assert torch.equal(model["embed_tokens"].detach(), torch.tensor([0.25, -1.0]))  # never selected, never moves
    assert list(c.anchor) == ["mlp_w"]

    # step 2: the optimizer moves to 8u, so Δ = u; 8u scores -11.25, 10u -61.25: k = 1 fails, W_2 restored
    w2 = 8 * u + torch.tensor([1e-3, 0.0])  # off the line: the candidates never reproduce it
    set_weights(model, w2)
    m = c.after_step(2, ctx, {})
    assert m["effopd/accepted_k"] == 0 and m["effopd/candidates_evaluated"] == 1
    assert torch.equal(model["mlp_w"].detach(), w2) and torch.equal(c.anchor["mlp_w"], w2)
    assert c.after_step(3, ctx, {}) == {}  # 3 is not a power of two
    assert [h["accepted_k"] for h in c.history] == [3, 0]


@pytest.mark.parametrize("rule,final", [("strict", 5.0), ("geq", 9.0)])
def test_scripted_scores_strict_and_geq(tmp_path, rule, final):
    # anchor 0, W_t = 1; V(W_t) = 0.5, candidates 3, 5, 7, 9 score 0.6, 0.7, 0.7, 0.8 (11: 0.1)
    # strict: accept 3 and 5, the tie at 7 stops -> 5; geq: accept up to 9, 11 fails -> 9. The anchor follows.
    model = toy_model([0.0])
    ctx = make_ctx(model, tmp_path)
    c = Scripted(make_cfg(accept=rule), ctx, from_list([0.5, 0.6, 0.7, 0.7, 0.8, 0.1]))
    set_weights(model, [1.0])
    c.after_step(1, ctx, {})
    assert [float(w) for w in c.seen] == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0][: len(c.seen)]
    assert float(model["mlp_w"].detach()) == final and float(c.anchor["mlp_w"]) == final

    if rule == "strict":  # next Δ: anchor 5, the optimizer moves to 6 -> Δ = 1, candidates 8, 10, ...
        c.seen.clear()
        c.score_fn = from_list([0.1, 0.0])
        set_weights(model, [6.0])
        c.after_step(2, ctx, {})
        assert [float(w) for w in c.seen] == [6.0, 8.0] and float(model["mlp_w"].detach()) == 6.0


def test_first_candidate_fails_restores_weights_bit_for_bit(tmp_path):
    g = torch.Generator().manual_seed(1)
    model = toy_model(torch.randn(64, generator=g).tolist())
    ctx = make_ctx(model, tmp_path)
    c = Scripted(make_cfg(), ctx, from_list([0.5, 0.4]))
    with torch.no_grad():
        model["mlp_w"].add_(torch.randn(64, generator=g) * 1e-3)  # "the optimizer step"
    w_t = model["mlp_w"].detach().clone()
    m = c.after_step(1, ctx, {})
    assert m["effopd/accepted_k"] == 0 and len(c.seen) == 2 and not torch.equal(c.seen[1], w_t)
    assert torch.equal(model["mlp_w"].detach(), w_t) and torch.equal(c.anchor["mlp_w"], w_t)


def test_adam_state_is_untouched_by_a_jump(tmp_path):
    model = toy_model([0.5, -0.5, 2.0])
    ctx = make_ctx(model, tmp_path)
    c = Scripted(make_cfg(), ctx, from_list([0.0, 1.0, 2.0, 1.0]))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    (model["mlp_w"].pow(2).sum() + model["embed_tokens"].sum()).backward()
    opt.step()
    before = copy.deepcopy(opt.state_dict())
    assert c.after_step(1, ctx, {})["effopd/accepted_k"] == 2
    after = opt.state_dict()
    for i, s in before["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(after["state"][i][key], s[key])
    assert after["param_groups"] == before["param_groups"]


def test_trigger_counts_optimizer_steps_from_the_scheduler(tmp_path):
    # 4 optimizer steps per training step: the scheduler's count is 4 after training step 1, 8 after 2, 12 after 3
    model = toy_model([0.0])
    sched = SimpleNamespace(last_epoch=0)
    ctx = make_ctx(model, tmp_path, stepper=SimpleNamespace(scheduler=sched))
    c = Scripted(make_cfg(), ctx, lambda w: 0.0)
    fired = []
    for step in range(1, 6):
        sched.last_epoch = 4 * step
        if c.after_step(step, ctx, {}):
            fired.append(c.history[-1]["t"])
    assert fired == [4, 8, 16]  # training steps 1, 2 and 4 (12 and 20 contain no power of two past 8/16)


def test_state_round_trip_restores_the_anchor_and_the_validation_stream(tmp_path):
    model = toy_model([0.0, 0.0])
    ctx = make_ctx(model, tmp_path)
    a = Scripted(make_cfg(), ctx, from_list([0.0, 1.0, 0.5]))
    set_weights(model, [0.5, 0.25])
    a.after_step(1, ctx, {})
    a.generator.manual_seed(1234)  # a state that differs from a fresh controller's
    state = a.state_dict()

    other = toy_model([9.0, 9.0])
    b = Scripted(make_cfg(), make_ctx(other, tmp_path), lambda w: 0.0)
    assert not torch.equal(b.anchor["mlp_w"], a.anchor["mlp_w"])
    b.load_state_dict(state)
    assert torch.equal(b.anchor["mlp_w"], torch.tensor([1.5, 0.75]))  # W_1 + 2Δ = 3·(0.5, 0.25)
    assert torch.equal(b.generator.get_state(), a.generator.get_state())
    assert b.history == a.history and b.last_opt_step == 1

    state["val_ids"] = ["other"] + state["val_ids"][1:]
    with pytest.raises(ValueError, match="validation prompts"):
        b.load_state_dict(state)


def test_validation_set_is_fixed_by_the_seed_and_saved(tmp_path):
    ctx = make_ctx(toy_model([0.0]), tmp_path)
    a = EffOPDController(make_cfg(), ctx)
    b = EffOPDController(make_cfg(), ctx)
    assert [p.id for p in a.val_prompts] == [p.id for p in b.val_prompts] and len(a.val_prompts) == 4
    assert len(set(p.id for p in a.val_prompts)) == 4
    assert (tmp_path / "effopd_val.jsonl").read_text().count("\n") == 4


@pytest.mark.parametrize("args,match", [
    ({"accept": "gt"}, r"controller_args\.effopd\.accept: 'gt' is not allowed"),
    ({"max_candidates": 0}, r"controller_args\.effopd\.max_candidates: must be >= 1"),
    ({"param_filter": ["lm_head"]}, r"controller_args\.effopd\.param_filter: \['lm_head'\] matches no trainable"),
    ({"param_filter": "attention_only"}, r"controller_args\.effopd\.param_filter: param_filter 'attention_only'"),
    ({"val_size": 9}, r"controller_args\.effopd\.val_size: 9 validation prompts requested, but the training set has 8"),
    ({"val_score": "teacher_agreement"}, r"teacher_agreement needs a teacher"),
    ({"candidates": 3}, r"unknown key controller_args\.effopd\.'candidates'"),
])
def test_config_errors_name_the_key(tmp_path, args, match):
    with pytest.raises(ConfigError, match=match):
        build_controllers(make_cfg(**args), make_ctx(toy_model([0.0]), tmp_path))
