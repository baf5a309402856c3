import pytest

from mentor.evaluate import pass_at_k, summarise


def test_pass_at_k_unbiased_estimator_by_hand():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c/n
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)  # 1 - C(9,5)/C(10,5) = 1 - 126/252
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 3, 2) == 1.0  # n - c < k
    with pytest.raises(ValueError, match="k=3 exceeds"):
        pass_at_k(2, 1, 3)


def test_summary_per_domain_and_lengths():
    items = [
        {"domain": "a", "rewards": [1.0, 0.0], "correct": [True, False], "lengths": [4, 6], "finish": ["stop", "length"]},
        {"domain": "b", "rewards": [0.0, 0.0], "correct": [False, False], "lengths": [2, 8], "finish": ["stop", "stop"]},
    ]
    s = summarise(items, k=2)
    assert s["accuracy"] == pytest.approx(0.25)
    assert s["pass@1"] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert s["pass@2"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert s["accuracy/a"] == pytest.approx(0.5) and s["accuracy/b"] == 0.0
    assert s["length/mean"] == pytest.approx(5.0) and s["length/max"] == 8
    assert s["truncated"] == pytest.approx(0.25)
