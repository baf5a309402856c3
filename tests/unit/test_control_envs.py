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


@pytest.mark.parametrize("name", ["Pendulum-v1", "Dmc-cheetah-run"])
def test_env_rng_state_restores_the_episode_sequence(name):
    env = make_env(name, seed=3)
    env.reset()
    saved = env.rng_state()
    later = [env.reset() for _ in range(3)]
    other = make_env(name, seed=99)
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
    with pytest.raises(ValueError, match="unknown DMC task cheetah-fly"):
        make_env("Dmc-cheetah-fly", 0)


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


def test_dmc_proprioceptive_repeats_actions_and_truncates_at_500_agent_steps():
    from dm_control import suite

    env, raw = make_env("Dmc-cheetah-run", seed=0), suite.load("cheetah", "run", task_kwargs={"random": 0})
    assert env.state_shape == (17,) and env.action_dim == 6 and not env.pixel_obs  # position 8 + velocity 9
    obs, ts = env.reset(), raw.reset()
    assert np.array_equal(obs, np.concatenate([ts.observation["position"], ts.observation["velocity"]]).astype(np.float32))
    a = np.linspace(-1.0, 1.0, 6)  # cheetah's box is [−1, 1]: the rescaling is the identity here
    obs, reward, term, trunc = env.step(a)
    r1, r2 = raw.step(a), raw.step(a)  # action repeat 2: two physics-control steps, rewards summed
    assert reward == pytest.approx(r1.reward + r2.reward, abs=1e-12)
    assert np.array_equal(obs, np.concatenate([r2.observation["position"], r2.observation["velocity"]]).astype(np.float32))
    steps = 1
    while not trunc:
        _, _, term, trunc = env.step(a)
        assert not term  # DMC tasks never terminate, they only time out
        steps += 1
    assert steps == 500  # 1,000 frames / action repeat 2


def test_dmc_visual_stacks_three_rendered_frames():
    env = make_env("Dmc-visual-walker-run", seed=0)
    assert env.state_shape == (9, 84, 84) and env.pixel_obs
    first = env.reset()
    assert first.dtype == np.uint8 and first.shape == (9, 84, 84)
    assert np.array_equal(first[0:3], first[3:6]) and np.array_equal(first[3:6], first[6:9])  # reset fills the stack
    assert first.std() > 0  # a rendered scene, not a blank buffer
    nxt, *_ = env.step(np.ones(env.action_dim))
    assert np.array_equal(nxt[0:6], first[3:9])  # the stack shifts by one frame
    assert np.array_equal(nxt[6:9], env.env.physics.render(84, 84, camera_id=0).transpose(2, 0, 1))
    assert not np.array_equal(nxt[6:9], first[6:9])
