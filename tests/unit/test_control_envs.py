"""Environment wrappers (action rescaling, RNG save/restore, names) and the pixel path of the MR.Q encoder."""

import numpy as np
import pytest
import torch

from mentor.control.agent import Agent, make_hyperparameters, shift_augment
from mentor.control.envs import make_env
from mentor.control.networks import Encoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gym_env_rescales_actions_to_the_box():
    env = make_env("Gym-Pendulum-v1", seed=0)  # action box [−2, 2]
    assert env.state_shape == (3,) and env.action_dim == 1 and not env.pixel_obs
    env.reset()
    env.step(np.array([1.0]))
    assert float(env.env.unwrapped.last_u) == pytest.approx(2.0)
    env.step(np.array([-0.25]))
    assert float(env.env.unwrapped.last_u) == pytest.approx(-0.5)
    env.step(np.array([7.0]))  # clipped to 1 → 2
    assert float(env.env.unwrapped.last_u) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="action must be 1 finite"):
        env.step(np.array([np.nan]))


def test_env_rng_state_restores_the_episode_sequence():
    env = make_env("Pendulum-v1", seed=3)
    env.reset()
    saved = env.rng_state()
    later = [env.reset() for _ in range(3)]
    other = make_env("Pendulum-v1", seed=99)
    other.set_rng_state(saved)
    assert all(np.array_equal(a, other.reset()) for a in later)


def test_seeded_first_reset_is_reproducible():
    assert np.array_equal(make_env("Pendulum-v1", seed=5).reset(), make_env("Pendulum-v1", seed=5).reset())
    assert not np.array_equal(make_env("Pendulum-v1", seed=5).reset(), make_env("Pendulum-v1", seed=6).reset())


def test_bad_names():
    with pytest.raises(ValueError, match="unknown gymnasium environment 'Nope-v0'"):
        make_env("Gym-Nope-v0", 0)
    with pytest.raises(ValueError, match="Dmc-cheetah-run"):
        make_env("Dmc-cheetah", 0)
    with pytest.raises(ValueError, match="continuous"):
        make_env("CartPole-v1", 0)


def test_shift_augment_zero_pad_is_identity_and_shapes():
    torch.manual_seed(0)
    img = torch.rand(3, 9, 84, 84)
    assert torch.allclose(shift_augment(img, pad=0), img, atol=1e-5)  # grid at pixel centres: bilinear = identity
    out = shift_augment(img, pad=4)
    assert out.shape == img.shape and not torch.allclose(out, img)
    # shifts are whole pixels within ±4: the centre crop of each output equals some shifted centre crop of its input
    for b in range(3):
        assert any(torch.allclose(out[b, :, 8:-8, 8:-8], img[b, :, 8 + dy : 76 + dy, 8 + dx : 76 + dx], atol=1e-5)
                   for dy in range(-4, 5) for dx in range(-4, 5))


def test_pixel_encoder_and_one_training_step():
    torch.manual_seed(0)
    enc = Encoder((9, 84, 84), 2, pixel_obs=True, zs_dim=16, za_dim=8, zsa_dim=16, hdim=16)
    zs = enc.zs(torch.randint(0, 256, (2, 9, 84, 84)).float())
    assert zs.shape == (2, 16)  # 84 → 41 → 20 → 9 → 7: 32·7·7 = 1568 inputs to the linear layer
    agent = Agent((9, 84, 84), 2, make_hyperparameters("drq", batch_size=2, zs_dim=16, zsa_dim=16, za_dim=8, enc_hdim=16,
                                                       value_hdim=16, policy_hdim=16, buffer_size_before_training=8,
                                                       target_update_freq=2), pixel_obs=True, buffer_capacity=32)
    rng = np.random.default_rng(0)
    for _ in range(10):
        agent.replay.add(rng.integers(0, 256, (9, 84, 84), dtype=np.uint8), rng.uniform(-1, 1, 2),
                         rng.integers(0, 256, (9, 84, 84), dtype=np.uint8), 1.0, False, False)
    assert agent.replay.obs.dtype == torch.uint8
    before = [p.clone() for p in agent.encoder.parameters()]
    agent.train()  # encoder (2 updates on augmented 5-step segments), value and policy
    assert agent.training_steps == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters()))
    assert agent.act(rng.integers(0, 256, (9, 84, 84), dtype=np.uint8), explore=False).shape == (2,)
