"""MR.Q / DR.Q agent: presets, encoder isolation, target copies, the encoder loss terms; TD3 update schedule."""

import dataclasses
import io

import numpy as np
import pytest
import torch

from mentor.control import losses as L
from mentor.control.agent import PRESETS, Agent, Hyperparameters, make_hyperparameters
from mentor.control.td3 import TD3, make_td3_hyperparameters

TINY = dict(batch_size=8, zs_dim=16, zsa_dim=16, za_dim=8, enc_hdim=16, value_hdim=16, policy_hdim=16,
            buffer_size_before_training=20, target_update_freq=4)

MRQ_DEFAULTS = {  # facebookresearch/MRQ:MRQ/MRQ.py Hyperparameters
    "batch_size": 256, "buffer_size": 1_000_000, "discount": 0.99, "target_update_freq": 250,
    "buffer_size_before_training": 10_000, "exploration_noise": 0.2, "target_policy_noise": 0.2, "noise_clip": 0.3,
    "dyn_weight": 1.0, "reward_weight": 0.1, "done_weight": 0.1, "prioritized": True, "alpha": 0.4, "min_priority": 1.0,
    "enc_horizon": 5, "Q_horizon": 3, "zs_dim": 512, "zsa_dim": 512, "za_dim": 256, "enc_hdim": 512,
    "enc_activ": "elu", "enc_lr": 1e-4, "enc_wd": 1e-4, "pixel_augs": True, "value_hdim": 512, "value_activ": "elu",
    "value_lr": 3e-4, "value_wd": 1e-4, "value_grad_clip": 20.0, "policy_hdim": 512, "policy_activ": "relu",
    "policy_lr": 3e-4, "policy_wd": 1e-4, "pre_activ_weight": 1e-5, "num_bins": 65, "lower": -10.0, "upper": 10.0,
}
DRQ_CHANGES = {"infonce_weight": 0.1, "infonce_tau": 0.1, "faded_replay": True, "fade_decay": 0.9999, "fade_floor": 0.1,
               "done_weight": 0.0, "enc_hdim": 750, "enc_lr": 3e-4, "enc_wd": 0.01, "value_wd": 0.01, "policy_wd": 0.01,
               "value_grad_clip": None, "pre_activ_weight": 0.0, "target_reward_scaling": False, "nstep_form": "standard"}
CORE = {"infonce_weight", "infonce_tau", "faded_replay", "fade_decay", "fade_floor"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mrq_preset_equals_mrq_defaults():
    hp = dataclasses.asdict(make_hyperparameters("mrq"))
    for k, v in MRQ_DEFAULTS.items():
        assert hp[k] == v, k
    assert hp["infonce_weight"] == 0.0 and hp["faded_replay"] is False
    assert hp["target_reward_scaling"] is True and hp["nstep_form"] == "mrq"
    assert make_hyperparameters("mrq") == Hyperparameters()


def test_drq_presets_set_exactly_their_flags():
    base = dataclasses.asdict(Hyperparameters())
    for preset, expected in (("drq", DRQ_CHANGES), ("drq_core", {k: DRQ_CHANGES[k] for k in CORE}),
                             ("drq_minus_core", {k: v for k, v in DRQ_CHANGES.items() if k not in CORE})):
        hp = dataclasses.asdict(make_hyperparameters(preset))
        changed = {k: hp[k] for k in hp if hp[k] != base[k]}
        # infonce_tau and fade_decay/floor equal MR.Q's unused defaults, so they do not show up as changes
        assert changed == {k: v for k, v in expected.items() if base[k] != v}, preset
        assert all(hp[k] == v for k, v in expected.items())
    assert set(PRESETS) == {"mrq", "drq", "drq_core", "drq_minus_core"}


def test_overrides_and_errors():
    hp = make_hyperparameters("mrq", infonce_weight=0.1)
    assert hp.infonce_weight == 0.1 and hp.enc_hdim == 512
    with pytest.raises(ValueError, match="unknown hyperparameter.*infonce_wieght"):
        make_hyperparameters("mrq", infonce_wieght=0.1)
    with pytest.raises(ValueError, match="unknown preset"):
        make_hyperparameters("drq2")
    with pytest.raises(ValueError, match="nstep_form"):
        make_hyperparameters("mrq", nstep_form="lambda")


def _agent(preset="drq", terminal_every=0, n=40, **kw):
    torch.manual_seed(0)
    agent = Agent((3,), 2, make_hyperparameters(preset, **{**TINY, **kw}), buffer_capacity=200)
    rng = np.random.default_rng(0)
    s = rng.standard_normal(3)
    for t in range(n):
        ns = rng.standard_normal(3)
        term = bool(terminal_every) and (t + 1) % terminal_every == 0
        agent.replay.add(s, rng.uniform(-1, 1, 2), ns, float(rng.standard_normal()), term, False)
        s = ns
    return agent


def test_value_and_policy_updates_do_not_touch_the_encoder():
    agent = _agent()
    before = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
    batch = agent.replay.sample_nstep(3)
    agent.train_rl(*batch)
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in agent.encoder.state_dict().items())
    assert all(p.requires_grad for p in agent.encoder.parameters())  # re-enabled after the policy step
    assert any(p.grad is not None for p in agent.policy.parameters())


def test_targets_are_hard_copies_every_target_update_freq_steps():
    agent = _agent()  # target_update_freq 4
    for call in range(1, 10):
        online = [{k: v.clone() for k, v in m.state_dict().items()} for m in (agent.encoder, agent.value, agent.policy)]
        targets_before = [{k: v.clone() for k, v in m.state_dict().items()}
                          for m in (agent.encoder_target, agent.value_target, agent.policy_target)]
        agent.train()
        targets_after = [m.state_dict() for m in (agent.encoder_target, agent.value_target, agent.policy_target)]
        copied = (call - 1) % 4 == 0
        reference = online if copied else targets_before
        for ref, got in zip(reference, targets_after):
            assert all(torch.equal(ref[k], got[k]) for k in ref), call
    assert agent.training_steps == 9


def test_reward_scales_roll_at_target_updates():
    agent = _agent("mrq")
    agent.train()
    s = agent.replay.reward_scale()
    assert agent.reward_scale == s and agent.target_reward_scale == 1.0  # (initial scale 1 moves to the target slot)


def test_encoder_loss_terms_follow_the_flags():
    mrq, drq = _agent("mrq", terminal_every=7), _agent("drq", terminal_every=7)
    for agent in (mrq, drq):
        torch.manual_seed(3)
        batch = agent.replay.sample_segments(5)
        _, parts = agent.encoder_loss(*batch)
        assert parts["dyn"] > 0 and parts["reward"] > 0
        if agent is mrq:
            assert parts["done"] > 0 and parts["infonce"] == 0.0
        else:
            assert parts["done"] == 0.0 and parts["infonce"] > 0


def test_encoder_loss_equals_hand_assembly():
    agent = _agent("drq", terminal_every=6)
    torch.manual_seed(1)
    s, a, ns, r, nd = agent.replay.sample_segments(5)
    total, _ = agent.encoder_loss(s, a, ns, r, nd)
    with torch.no_grad():
        tgt = agent.encoder_target.zs(ns.reshape(-1, 3)).reshape(8, 5, -1)
        z = agent.encoder.zs(s[:, 0])
        m = torch.ones(8, 1)
        expect = 0.0
        for i in range(5):
            _, z, rl = agent.encoder.model_all(z, a[:, i])
            expect += (L.masked_mse(z, tgt[:, i], m) + 0.1 * (L.two_hot_cross_entropy(rl, r[:, i], agent.bins) * m).mean()
                       + 0.1 * L.infonce_loss(z, tgt[:, i], m, 0.1))
            m = m * nd[:, i : i + 1]
    assert total.item() == pytest.approx(float(expect), rel=1e-6)


def test_agent_state_dict_round_trip():
    a = _agent("drq")
    for _ in range(6):
        a.train()
    b = _agent("drq", n=0)
    # through bytes, as a checkpoint: torch's Optimizer.load_state_dict keeps the very `step` tensors it is given,
    # so loading a live state dict would make a's and b's optimisers share (and double-increment) them
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=False))
    assert all(torch.equal(x, y) for x, y in zip(a.value.parameters(), b.value.parameters()))
    assert b.training_steps == 6 and b.replay.num_adds == 40 and b.reward_scale == a.reward_scale
    torch.manual_seed(5)
    a.train()
    torch.manual_seed(5)
    b.train()
    assert all(torch.equal(x, y) for x, y in zip(a.policy.parameters(), b.policy.parameters()))
    with pytest.raises(ValueError, match="hyperparameters differ"):
        _agent("mrq", n=0).load_state_dict(a.state_dict())


def test_td3_policy_delay_and_soft_targets():
    torch.manual_seed(0)
    agent = TD3((3,), 2, make_td3_hyperparameters(batch_size=8, hdim=16, start_steps=20, tau=0.5), buffer_capacity=100)
    rng = np.random.default_rng(0)
    for t in range(30):
        agent.replay.add(rng.standard_normal(3), rng.uniform(-1, 1, 2), rng.standard_normal(3), 1.0, False, False)
    actor0 = [p.clone() for p in agent.actor.parameters()]
    tgt0 = [p.clone() for p in agent.actor_target.parameters()]
    agent.train()  # critic only (policy_freq 2)
    assert all(torch.equal(x, y) for x, y in zip(actor0, agent.actor.parameters()))
    agent.train()  # critic + actor + soft target update θ' ← 0.5θ' + 0.5θ
    actor2 = list(agent.actor.parameters())
    assert not all(torch.equal(x, y) for x, y in zip(actor0, actor2))
    for t0, a2, t2 in zip(tgt0, actor2, agent.actor_target.parameters()):
        assert torch.allclose(t2, 0.5 * t0 + 0.5 * a2, atol=1e-7)
