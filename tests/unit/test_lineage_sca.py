"""SCA class counting, eval-file parsing and the quality score Q (spec atlas.md §4.1 SCA and Q rows)."""

import json
import math

import numpy as np
import pytest

from mentor.lineage.sca import (correctness, from_released_scores, is_mcq, quality_score, read_eval, sca_classes,
                                sca_fractions, weights)


def test_sca_classes_and_fractions_by_hand():
    classes = sca_classes([0, 0, 1, 1, 0], [1, 1, 0, 1, 0])
    assert classes == ["01", "01", "10", "11", "00"]
    f = sca_fractions(classes)
    assert f == {"p00": 0.2, "p01": 0.4, "p10": 0.2, "p11": 0.2}


def test_correctness_is_mean_at_k_at_least_half():
    # mean@4 of [1,0,0,0] = 0.25 -> 0; [1,1,0,0] = 0.5 -> 1; 0.75 -> 1
    assert correctness([0.25, 0.5, 0.75, 0.0]).tolist() == [0, 1, 1, 0]


def test_q_atlas_le3b_spec_values():
    # L = 1.5*.4 - .3*.2 - .5*.2 - 1.5*.2 = .14; S1a = .5*.9 + .3*(1-.05) + .2*clip(4/2) = .935
    # S1b = sigmoid(.42) + .05*H(.2,.4,.2,.2)/ln4 = .603483 + .05*1.332179/1.386294 = .651531
    # S1 = .2*.935 + .55*.651531 + .25*.99 = .792842; lambda = log10(1.7) = .230449
    # S2 = .230449*2/20 + .769551*.14 = .130782; S3 = .230449*3/15 + .769551*.14 = .153827
    # Q = .6*.792842 + .25*.130782 + .15*.153827 = .531475
    r = quality_score(p00=0.2, p01=0.2, p10=0.4, p11=0.2, r_con=0.9, r_mcq=0.1, avg_occ=2, leak_frac=0.01,
                      d_mean4=2.0, d_pass4=3.0, model_size_b=1.7, w=weights("atlas_le3b"))
    expect = {"L_SCA": 0.14, "S1a": 0.935, "S1b": 0.651531, "S1": 0.792842, "lambda": 0.230449, "S2": 0.130782,
              "S3": 0.153827, "Q": 0.531475}
    for k, v in expect.items():
        assert r[k] == pytest.approx(v, abs=1e-6), k


def test_q_atlas_gt3b_by_hand():
    # L = .5*.4 + 1.5*.2 - .8*.2 - .8*.2 = .18; S1b = sigmoid(.54) + .048048 = .631812 + .048048 = .679861
    # S1 = .2*.935 + .5*.679861 + .3*.99 = .823930; lambda = log10 8 = .903090
    # S2 = .903090*.1 + .096910*.18 = .107753; S3 = .903090*.2 + .017444 = .198062
    # Q = .35*.823930 + .35*.107753 + .30*.198062 = .385508
    r = quality_score(0.2, 0.2, 0.4, 0.2, 0.9, 0.1, 2, 0.01, 2.0, 3.0, 8.0, weights("atlas_gt3b"))
    assert r["S1b"] == pytest.approx(1 / (1 + math.exp(-0.54)) + 0.05 * 1.3321790402101223 / math.log(4), abs=1e-9)
    for k, v in {"L_SCA": 0.18, "S1": 0.823930, "lambda": 0.903090, "S2": 0.107753, "S3": 0.198062,
                 "Q": 0.385508}.items():
        assert r[k] == pytest.approx(v, abs=1e-6), k


def test_q_clips_and_overrides():
    w = weights("atlas_le3b", w1=1.0, w2=0.0, w3=0.0)
    r = quality_score(0.25, 0.25, 0.25, 0.25, 1.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.5, w)
    # P_reuse = clip(4/20, .3, 1) = .3; lambda = clip(log10 .5) = 0; L = (1.5-.3-.5-1.5)/4 = -.2
    assert r["P_reuse"] == 0.3 and r["lambda"] == 0.0 and r["L_SCA"] == pytest.approx(-0.2, abs=1e-12)
    assert r["S2"] == 0.0 and r["Q"] == pytest.approx(r["S1"], abs=1e-12)
    with pytest.raises(ValueError, match="unknown Q weight"):
        weights("atlas_le3b", beta=1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        quality_score(0.5, 0.5, 0.5, 0.0, 1, 0, 1, 0, 0, 0, 1, w)


def test_released_score_encoding_and_digit_order():
    with pytest.warns(UserWarning, match="inconsistent"):
        assert from_released_scores([0.0, 0.2, 0.5, 1.0]) == ["00", "10", "11", "01"]
    with pytest.warns(UserWarning):
        assert from_released_scores([0.0, 0.2, 0.5, 1.0], "after,base") == ["00", "01", "11", "10"]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="not one of"):
        from_released_scores([0.3])


def test_read_eval_formats_and_errors(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "correct": [True, False, True, True]}, {"id": 7, "correct": False}, {"id": "c", "pass_rate": 0.25}]))
    assert read_eval(p) == {"a": 0.75, "7": 0.0, "c": 0.25}
    p.write_text(json.dumps({"id": "a", "correct": True}) + "\n" + json.dumps({"id": "a", "correct": True}))
    with pytest.raises(ValueError, match=r"e.jsonl:2: duplicate id"):
        read_eval(p)
    p.write_text(json.dumps({"id": "a", "pass_rate": 1.5}))
    with pytest.raises(ValueError, match=r"e.jsonl:1: 'pass_rate' must be a number in \[0, 1\]"):
        read_eval(p)


def test_mcq_heuristic():
    assert is_mcq("Which? (A) 1 (B) 2 (C) 3")
    assert is_mcq("Pick one.\nA. 3\nB. 4")
    assert not is_mcq("Let A be a set and B its complement.")
    assert not np.any([is_mcq("Point A. Then")])
