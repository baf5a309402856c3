import dataclasses

import numpy as np
import pytest
import torch

from mentor.config import ConfigError
from mentor.selection import GPS, MoPPS, Observation
from mentor.selection.allocate import allocate, difficulty_bin, uniform_allocation
from mentor.selection.embed import cosine, hashed_ngrams, rows_dense
from mentor.selection.gps import binomial_nll, brier, greedy_acquire, thompson_draw
from mentor.tasks import make_prompts

SMALL = {"dim": 1 << 11, "hidden": 64, "history_dim": 16, "lr": 3e-3}  # a small predictor keeps tests fast


@pytest.fixture
def one_thread():
    """The predictor's ops are tiny: on a busy 2-core machine, 2 intra-op threads made this test 15x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_greedy_acquisition_without_diversity_ranks_by_closeness_to_half():
    X = torch.eye(3)
    # λ = 0: utilities −(p − 0.5)² = 0, −0.0004, −0.16 -> prompt 0 then prompt 1 (spec §4.1 ids 1, 2 are 1-based)
    assert greedy_acquire(torch.tensor([0.5, 0.52, 0.9]), X, 2, lam=0.0, mu=0.5) == [0, 1]


def test_greedy_acquisition_diversity_picks_the_orthogonal_prompt():
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # first pick: no dispersion term, utilities (0, 0, −0.01) -> prompt 0 (lowest id among ties);
    # second: prompt 1 scores 0 + 1·(1 − 1) = 0, prompt 2 scores −0.01 + 1·(1 − 0) = 0.99 -> prompt 2
    assert greedy_acquire(torch.tensor([0.5, 0.5, 0.6]), X, 2, lam=1.0, mu=0.5) == [0, 2]


def test_greedy_acquisition_explores_away_from_the_previous_batch():
    X = torch.eye(2)
    # previous batch = prompt 0's direction: prompt 0 scores 0 + 1·0.5·0 = 0, prompt 1 −0.0025 + 0.5·1 = 0.4975
    assert greedy_acquire(torch.tensor([0.5, 0.45]), X, 1, lam=1.0, mu=0.5, prev_dense=X[:1]) == [1]
    # same on a sparse matrix
    assert greedy_acquire(torch.tensor([0.5, 0.45]), X.to_sparse(), 1, lam=1.0, mu=0.5, prev_dense=X[:1]) == [1]
    with pytest.raises(ValueError, match="asked for 3 prompts from 2"):
        greedy_acquire(torch.tensor([0.5, 0.45]), X, 3, lam=0.0, mu=0.0)


def test_brier_and_binomial_nll():
    assert brier([0.2, 0.8], [0, 1]) == pytest.approx(0.04, abs=1e-12)  # (0.04 + 0.04) / 2
    # z = 0: p = 1/2; k = 1 of n = 2 -> −(log ½ + log ½)/2 = log 2 ; z = ln 3: p = 3/4, k = 3 of 4 -> −(3 ln ¾ + ln ¼)/4
    assert float(binomial_nll(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0]))) == pytest.approx(np.log(2), abs=1e-6)
    want = -(3 * np.log(0.75) + np.log(0.25)) / 4
    assert float(binomial_nll(torch.tensor([np.log(3.0)]), torch.tensor([3.0]), torch.tensor([4.0]))) == pytest.approx(want, abs=1e-6)


def test_featuriser_normalises_case_and_whitespace_and_separates_unrelated_texts():
    X = hashed_ngrams(["What is  2+2?", " what IS 2+2?\n", "The quick brown fox jumps", "Solve x^2 = 9 for x"])
    D = X.to_dense()
    assert torch.equal(D[0], D[1])
    assert torch.linalg.norm(D, dim=1) == pytest.approx([1.0] * 4, abs=1e-6)
    assert float(D[2] @ D[3]) < 0.3 and float(D[0] @ D[2]) < 0.3
    assert torch.allclose(cosine(X, rows_dense(X, [0])), D @ D[0][:, None], atol=1e-6)
    with pytest.raises(ValueError, match="text 0 is int"):
        hashed_ngrams([3])


def test_allocation_by_marginal_gain():
    # gains: 0.99 (p2), 0.5 (p0), 0.25 (p0), 0.125 (p0) all > 0.1 (p1) -> n = (3, 0, 1)
    assert allocate([0.5, 0.1, 0.99], 4) == [3, 0, 1]
    # cap 2: p2, p0, p0 (now capped), then p1 (0.1 > p2's 0.0099) -> (2, 1, 1)
    assert allocate([0.5, 0.1, 0.99], 4, cap=2) == [2, 1, 1]
    assert uniform_allocation(3, 4) == [2, 1, 1]
    assert [difficulty_bin(p) for p in (0.0, 0.1, 0.69, 0.7, 1.0)] == ["hard", "challenging", "challenging", "easy", "easy"]
    with pytest.raises(ValueError, match="exceeds cap"):
        allocate([0.5, 0.5], 5, cap=2)


def _pool(split: str, per_digit: int):
    return [dataclasses.replace(p, id=f"{split}{d}-{p.id}") for d in (1, 2, 3, 4)
            for p in make_prompts("add", per_digit, 0, split=split, digits=d)]


TRUE = {1: 0.9, 2: 0.6, 3: 0.3, 4: 0.05}  # known pass rate per digit count


def test_predictor_recovers_pass_rates_and_generalises_better_than_per_prompt_posteriors(one_thread):
    pool, unseen = _pool("train", 40), _pool("eval", 10)
    gps, mopps = GPS(pool, seed=0, args=SMALL), MoPPS(pool, seed=0)
    rng = np.random.default_rng(0)
    for step in range(20):  # a synthetic stream: 16 random prompts per step, 8 rollouts each, binomial successes
        batch = [pool[i] for i in rng.choice(len(pool), 16, replace=False)]
        obs = [Observation(p.id, int(rng.binomial(8, TRUE[p.difficulty])), 8, step) for p in batch]
        gps.update(obs)
        mopps.update(obs)
    s_pool = [TRUE[p.difficulty] for p in pool]
    s_unseen = [TRUE[p.difficulty] for p in unseen]
    # measured 0.0106 on the pool and 0.0069 on unseen prompts (binomial noise of 320 observations of 8 rollouts
    # bounds how close it can get); MoPPS on unseen prompts is its prior mean 0.5:
    # Brier = mean (0.5 − s)² = (0.16 + 0.01 + 0.04 + 0.2025) / 4 = 0.103125
    assert brier(gps.predict(pool), s_pool) < 0.02
    assert brier(mopps.predict(unseen), s_unseen) == pytest.approx(0.103125, abs=1e-9)
    assert brier(gps.predict(unseen), s_unseen) < 0.02
    # per-prompt posteriors on the pool itself are worse too: ≤ 8 observations per prompt, most seen 0–3 times
    assert brier(gps.predict(pool), s_pool) < brier(mopps.predict(pool), s_pool)


def test_gps_cold_start_is_uniform_then_acquires_and_resumes_identically(one_thread):
    pool = _pool("train", 8)
    g = GPS(pool, seed=1, args=SMALL)
    first = g.select(4)
    assert g.metrics()["gps/cold_start"] == 1.0 and len({p.id for p in first}) == 4
    g.update([Observation(p.id, 4, 8, 0) for p in first])
    g.select(4)
    assert g.metrics()["gps/cold_start"] == 0.0
    g.update([Observation(p.id, 2, 8, 1) for p in pool[:4]])
    state = g.state_dict()
    nxt = [p.id for p in g.select(6)]
    h = GPS(pool, seed=5, args=SMALL)
    h.load_state_dict(state)
    assert [p.id for p in h.select(6)] == nxt


def test_gps_config_and_input_errors():
    pool = _pool("train", 2)
    with pytest.raises(ConfigError, match=r"unknown key rl\.selector_args\.'lambda'"):
        GPS(pool, args={"lambda": 0.1})
    with pytest.raises(ConfigError, match="rl.selector_args.target"):
        GPS(pool, args={**SMALL, "target": 1.0})
    g = GPS(pool, args=SMALL)
    with pytest.raises(ValueError, match="successes=9, n_samples=8"):
        g.update([Observation(pool[0].id, 9, 8, 0)])
    with pytest.raises(ValueError, match="featuriser 'bow'"):
        GPS(pool, args={**SMALL, "featuriser": "bow"})


def test_no_repeat_steps_excludes_recent_batches_and_survives_resume(one_thread):
    # 6 prompts, 2 per step, no_repeat_steps = 2: three consecutive batches must cover all 6 prompts (each step's
    # candidates exclude the last two batches), the 4th may repeat the 1st; and a resumed selector continues alike.
    pool = _pool("train", 2)[:6]
    g = GPS(pool, seed=0, args={**SMALL, "cold_start_updates": 0, "no_repeat_steps": 2})
    batches = [[p.id for p in g.select(2)] for _ in range(3)]
    assert sorted(i for b in batches for i in b) == sorted(p.id for p in pool)
    state = g.state_dict()
    nxt = [p.id for p in g.select(2)]
    assert set(nxt) == set(batches[0])  # the only prompts not picked in the last two steps
    h = GPS(pool, seed=3, args={**SMALL, "cold_start_updates": 0, "no_repeat_steps": 2})
    h.load_state_dict(state)
    assert [p.id for p in h.select(2)] == nxt
    with pytest.raises(ConfigError, match="no_repeat_steps: must be >= 0"):
        GPS(pool, args={**SMALL, "no_repeat_steps": -1})


def test_thompson_draw_has_the_beta_mean_and_variance():
    # Beta(κp, κ(1−p)) with κ = 8: mean p, variance p(1−p)/(κ+1) -> 0.25/9 = 0.027778 at p = 0.5, 0.09/9 = 0.01 at 0.1
    rng = np.random.default_rng(0)
    draws = torch.stack([thompson_draw(torch.tensor([0.5, 0.1]), 8.0, rng) for _ in range(20000)])
    np.testing.assert_allclose(draws.mean(0).numpy(), [0.5, 0.1], atol=3e-3)
    np.testing.assert_allclose(draws.var(0).numpy(), [0.25 / 9, 0.09 / 9], rtol=0.04)
    # p̂ at the boundary stays a valid Beta (clipped): draws are finite and within [0, 1]
    edge = thompson_draw(torch.tensor([0.0, 1.0]), 8.0, rng)
    assert torch.isfinite(edge).all() and ((edge >= 0) & (edge <= 1)).all()


def test_thompson_acquisition_spreads_picks_where_greedy_repeats(one_thread):
    # An untrained predictor says p̂ = 0.5 for every prompt (zero output layer). Greedy with λ = 0 breaks the tie by
    # the lowest pool index, so it picks prompts 0..3 every step; Thompson ranks fresh Beta(4, 4) draws, so five
    # steps reach more than the 4 prompts greedy keeps, and a resumed selector draws the same next batch.
    pool = _pool("train", 2)[:12]
    args = {**SMALL, "cold_start_updates": 0, "lam": 0.0}
    greedy = GPS(pool, seed=0, args=args)
    assert {tuple(p.id for p in greedy.select(4)) for _ in range(5)} == {tuple(p.id for p in pool[:4])}
    ts = GPS(pool, seed=0, args={**args, "acquisition": "thompson"})
    assert len({p.id for _ in range(5) for p in ts.select(4)}) > 4
    state = ts.state_dict()
    nxt = [p.id for p in ts.select(4)]
    resumed = GPS(pool, seed=7, args={**args, "acquisition": "thompson"})
    resumed.load_state_dict(state)
    assert [p.id for p in resumed.select(4)] == nxt
    with pytest.raises(ConfigError, match="acquisition: must be 'greedy' or 'thompson'"):
        GPS(pool, args={**SMALL, "acquisition": "ucb"})
    with pytest.raises(ConfigError, match="ts_concentration: must be > 0"):
        GPS(pool, args={**SMALL, "ts_concentration": 0})
