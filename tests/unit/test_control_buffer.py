"""Replay buffer of MR.Q / DR.Q: segment masks, n-step targets on a hand-built trajectory, LAP and faded sampling,
checkpoint round-trip."""

import numpy as np
import pytest
import torch

from mentor.control import losses as L
from mentor.control.buffer import ReplayBuffer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fill(buf: ReplayBuffer, rewards, ends, start_obs=0.0):
    """Add transitions with obs = running counter, action = reward/10; `ends[t]` in {None, 'term', 'trunc'}."""
    obs = start_obs
    for r, end in zip(rewards, ends):
        buf.add(np.array([obs]), np.array([r / 10]), np.array([obs + 1]), r, end == "term", end == "trunc")
        obs += 1
        if end:
            obs += 100  # next episode starts somewhere else


def test_masks_for_truncated_and_terminated_episodes():
    buf = ReplayBuffer((1,), 1, 100, horizon=3, batch_size=4)
    _fill(buf, [1, 1, 1, 1, 1], [None] * 4 + ["trunc"])
    # slots 0-4 transitions, slot 5 the last next state. Segments of 3 must fit inside the episode: starts 0, 1
    # become valid when transitions 3 and 4 are added; starts 2, 3, 4 would cross the truncation: masked.
    assert buf.mask[:6].tolist() == [1, 1, 0, 0, 0, 0]
    assert buf.obs[5, 0].item() == 5.0 and buf.ard[5].tolist() == [0.0, 0.0, 0.0]
    _fill(buf, [2, 2, 2, 2, 2], [None] * 4 + ["term"], start_obs=10)
    # slots 6-10, next-state slot 11. A terminated episode keeps its last segments (losses mask past the terminal)
    assert buf.mask[:12].tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
    assert buf.ard[6:12, 1].tolist() == [1, 1, 1, 1, 0, 0]
    assert buf.size == 11 and buf.high == 12 and buf.env_terminates


def test_nstep_targets_on_hand_built_trajectory_with_terminal():
    buf = ReplayBuffer((1,), 1, 100, horizon=3, batch_size=4)
    # episode A: rewards 1, 2, 4 then terminal (slots 0-2, next-state slot 3); episode B: 8, 16, 32, ... (slots 4-)
    _fill(buf, [1, 2, 4], [None, None, "term"])
    _fill(buf, [8, 16, 32, 64], [None, None, None, "trunc"], start_obs=50)
    state, action, next_state, r, nd = buf.gather_nstep(np.array([0, 1, 2, 4]), 3)
    assert state[:, 0].tolist() == [0.0, 1.0, 2.0, 50.0]
    assert action[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert r.tolist() == [[1, 2, 4], [2, 4, 0], [4, 0, 8], [8, 16, 32]]
    assert nd.tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]]
    assert next_state[:, 0].tolist() == [3.0, 50.0, 51.0, 53.0]  # s_{t+3}; rows 0-2 bootstrap with D = 0
    g = 0.5
    R, D = L.nstep_returns(r, nd, g, "standard")
    # start 0: 1 + .5·2 + .25·4 = 3; start 1: 2 + .5·4 = 4; start 2: 4 (terminal first); start 4: 8 + 8 + 8 = 24
    assert R[:, 0].tolist() == [3.0, 4.0, 4.0, 24.0]
    assert D[:, 0].tolist() == [0.0, 0.0, 0.0, 0.125]
    R, D = L.nstep_returns(r, nd, g, "mrq")
    # MR.Q keeps rewards read past the terminal: start 2 reads the next-state slot (0) and episode B's 8: 4 + 0 + 2
    assert R[:, 0].tolist() == [3.0, 4.0, 6.0, 24.0]
    assert D[:, 0].tolist() == [0.0, 0.0, 0.0, 0.125]


def test_segments_for_the_encoder_unroll():
    buf = ReplayBuffer((1,), 1, 100, horizon=2, batch_size=4)
    _fill(buf, [1, 2, 4], [None, None, "term"])
    s, a, ns, r, nd = buf.gather_segments(np.array([1]), 2)
    assert s[0, :, 0].tolist() == [1.0, 2.0] and ns[0, :, 0].tolist() == [2.0, 3.0]
    assert a[0, :, 0].tolist() == pytest.approx([0.2, 0.4]) and r[0].tolist() == [2, 4] and nd[0].tolist() == [1, 0]


def _buffer_with(priorities, ages, faded=True, prioritized=True):
    """A buffer whose slots i hold priority p_i and age a_i (adds since written), all sampleable."""
    n = len(priorities)
    buf = ReplayBuffer((1,), 1, n + 2, horizon=1, batch_size=50_000, prioritized=prioritized, faded=faded)
    buf.num_adds = max(ages) + 1
    buf.add_index[:n] = torch.tensor([buf.num_adds - 1 - a for a in ages])
    buf.priority[:n] = torch.tensor(priorities, dtype=torch.float32)
    buf.mask[:n] = 1.0
    return buf


def test_faded_sampling_matches_spec_example():
    # priorities (1, 4), ages (0, 6931): P ∝ (1·1, 4·0.500006) → (0.333331, 0.666669)
    buf = _buffer_with([1.0, 4.0], [0, 6931])
    w = buf.sampling_weights()[:2]
    p = (w / w.sum()).tolist()
    assert p[0] == pytest.approx(1 / 3.000024, abs=1e-6) and p[1] == pytest.approx(2.000024 / 3.000024, abs=1e-6)


def test_faded_sampling_distribution_empirical():
    torch.manual_seed(0)
    abs_td = torch.tensor([0.3, 2.0, 10.0, 50.0, 5.0])
    ages = [0, 1000, 6931, 20000, 40000]  # the last two are at/below the floor 0.1 (0.9999^23026 = 0.1)
    buf = _buffer_with(L.lap_priority(abs_td).tolist(), ages)
    expected = torch.tensor([max(max(d, 1.0) ** 0.4 * max(0.9999**a, 0.1), 0) for d, a in zip(abs_td.tolist(), ages)],
                            dtype=torch.float64)
    expected /= expected.sum()
    counts = torch.zeros(buf.capacity, dtype=torch.float64)
    for _ in range(8):  # 400k draws: standard error of each frequency < 8e−4
        counts += torch.bincount(torch.as_tensor(buf.sample_ind()), minlength=buf.capacity).double()
    freq = counts / counts.sum()
    assert freq[5:].sum().item() == 0.0  # unmasked slots never drawn
    assert torch.allclose(freq[:5], expected, atol=3e-3), (freq[:5], expected)


def test_lap_without_fade_and_uniform():
    buf = _buffer_with([1.0, 4.0], [0, 6931], faded=False)
    w = buf.sampling_weights()[:2]
    assert (w / w.sum()).tolist() == pytest.approx([0.2, 0.8], abs=1e-12)
    buf = _buffer_with([1.0, 4.0], [0, 6931], faded=False, prioritized=False)
    assert buf.sampling_weights()[:2].tolist() == [1.0, 1.0]


def test_update_priority_and_running_max():
    torch.manual_seed(0)
    buf = ReplayBuffer((1,), 1, 50, horizon=1, batch_size=3)
    _fill(buf, [1] * 10, [None] * 10)
    ind = buf.sample_ind()
    buf.update_priority(torch.tensor([2.0, 3.0, 5.0]))
    assert buf.max_priority == 5.0
    assert buf.priority[torch.as_tensor(ind)].max().item() == 5.0
    _fill(buf, [1], [None], start_obs=20)
    assert buf.priority[10].item() == 5.0  # new transitions get the running max


def test_reward_scale_is_mean_abs_reward():
    buf = ReplayBuffer((1,), 1, 50, horizon=1, batch_size=3)
    _fill(buf, [1.0, -3.0, 2.0], [None, None, "trunc"])
    # |1| + |−3| + |2| over 3 transitions (the next-state slot is not a transition) = 2
    assert buf.reward_scale() == pytest.approx(2.0, abs=1e-7)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    buf = ReplayBuffer((2,), 1, 64, horizon=3, batch_size=8, faded=True)
    rng = np.random.default_rng(0)
    for t in range(40):
        buf.add(rng.standard_normal(2), rng.uniform(-1, 1, 1), rng.standard_normal(2), float(rng.standard_normal()),
                t == 17, t == 39)
    buf.sample_ind()
    buf.update_priority(torch.linspace(1, 3, 8))
    buf.save(tmp_path / "buf.pt")
    other = ReplayBuffer((2,), 1, 64, horizon=3, batch_size=8, faded=True)
    other.load(tmp_path / "buf.pt")
    for name in ("obs", "ard", "priority", "mask", "add_index"):
        assert torch.equal(getattr(buf, name), getattr(other, name)), name
    for k in ReplayBuffer._SCALARS:
        assert getattr(buf, k) == getattr(other, k), k
    torch.manual_seed(1)
    a = buf.sample_segments(3)
    torch.manual_seed(1)
    b = other.sample_segments(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # a larger buffer accepts it (a run extended to more steps); a smaller one that cannot hold it does not
    bigger = ReplayBuffer((2,), 1, 128, horizon=3, batch_size=8, faded=True)
    bigger.load(tmp_path / "buf.pt")
    assert torch.equal(bigger.obs[:64], buf.obs)
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer((2,), 1, 16, horizon=3, batch_size=8).load(tmp_path / "buf.pt")
    with pytest.raises(ValueError, match="state/action"):
        ReplayBuffer((3,), 1, 64, horizon=3, batch_size=8).load(tmp_path / "buf.pt")


def test_sampling_before_any_complete_segment_is_an_error():
    buf = ReplayBuffer((1,), 1, 50, horizon=3, batch_size=2)
    _fill(buf, [1, 1], [None, None])
    with pytest.raises(RuntimeError, match="no complete segment"):
        buf.sample_ind()
