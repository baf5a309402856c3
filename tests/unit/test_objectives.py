import pytest

from mentor.config import ConfigError, DistillConfig, RLConfig, TeacherConfig
from mentor.objectives import OBJECTIVES, check_distill, resolve


def test_paper_defaults():
    g = resolve("grpo", RLConfig())
    assert (g.aggregation, g.clip_eps_low, g.clip_eps_high, g.selector, g.group_size) == ("seq_mean_token_mean", 0.2, 0.2, "uniform", 8)
    d = resolve("dapo", RLConfig())
    assert (d.aggregation, d.clip_eps_high, d.overlong_shaping, d.selector) == ("token_mean", 0.28, True, "dynamic")
    assert resolve("dr_grpo", RLConfig()).aggregation == "seq_mean_token_sum_norm"
    assert resolve("rloo", RLConfig()).aggregation == "seq_mean_token_sum"
    o = resolve("opd", RLConfig())
    assert (o.group_size, o.dual_clip_c, o.aggregation) == (1, 3.0, "token_mean")


def test_overrides_win_over_defaults():
    r = resolve("dapo", RLConfig(clip_eps_high=0.3, selector="uniform", overlong_shaping=False, aggregation="seq_mean_token_mean"))
    assert (r.clip_eps_high, r.selector, r.overlong_shaping, r.aggregation) == (0.3, "uniform", False, "seq_mean_token_mean")


@pytest.mark.parametrize("algo,rl,msg", [
    ("ppo", RLConfig(), "not an RL objective"),
    ("grpo", RLConfig(group_size=1), "at least 2"),
    ("lpo_fwd", RLConfig(lpo_tau="median"), "rl.lpo_tau"),
    ("lpo_fwd", RLConfig(lpo_tau=-1.0), "positive"),
    ("grpo", RLConfig(dual_clip_c=0.5), "dual_clip_c"),
    ("lpo_rev", RLConfig(aggregation="token_mean"), "leave aggregation unset"),
])
def test_bad_settings_fail_with_key(algo, rl, msg):
    with pytest.raises(ConfigError, match=msg):
        resolve(algo, rl)


def test_opd_is_lambda_one_only():
    check_distill("opd", DistillConfig(teacher="t"))
    check_distill("g_opd", DistillConfig(teacher="t", reward_scale=1.25))
    with pytest.raises(ConfigError, match="use algo=g_opd"):
        check_distill("opd", DistillConfig(teacher="t", reward_scale=1.25))
    with pytest.raises(ConfigError, match="use algo=g_opd"):
        check_distill("opd", DistillConfig(teachers={"a": TeacherConfig(model="t", reward_scale=0.5)}))


def test_every_objective_resolves():
    for name in OBJECTIVES:
        resolve(name, RLConfig())
