"""The lineage rule (spec atlas.md §4.1 lineage rows), hand-built records."""

import numpy as np

from mentor.lineage.attribution import NO_DATE, resolve_lineage

Y = {2022: 738521, 2023: 738886, 2024: 739251, 2025: 739617}  # ordinal of Jan 1


def spec_case(a_year=2023, cos_bc=0.85):
    # records: 0 = A (src olympiads), 1 = B (no src), 2 = C (src x); datasets 0, 1, 2
    own = ["olympiads", None, "x"]
    date = np.array([Y[a_year], Y[2024], Y[2022]])
    sem = {1: [(0, 0.95), (2, cos_bc)]}
    return resolve_lineage(own, date, np.array([0, 1, 2]), semantic=sem)


def test_b_inherits_olympiads_c_below_threshold():
    att = spec_case()
    assert att[1].source == "olympiads" and att[1].evidence == "semantic" and att[1].via == 0
    assert att[1].similarity == 0.95
    assert att[0].evidence == att[2].evidence == "label"


def test_later_dated_candidate_does_not_count():
    att = spec_case(a_year=2025)
    assert att[1].source is None and att[1].evidence == "unattributed"


def test_earliest_dated_candidate_wins_over_most_similar():
    att = spec_case(cos_bc=0.92)  # C (2022) now above 0.9 and earlier than A (2023)
    assert att[1].source == "x" and att[1].via == 2


def test_own_dataset_rule():
    own = ["olympiads", None, None, None, None]
    date = np.array([Y[2022], Y[2024], Y[2023], Y[2023], Y[2023]])
    first_ds = np.array([0, 1, 1, 1, 1])
    sem = {1: [(2, 0.97), (3, 0.96), (4, 0.95)]}  # B's top-3 are all from B's own dataset
    att = resolve_lineage(own, date, first_ds, semantic=sem)
    assert att[1].source is None and att[1].evidence == "own_dataset"


def test_near_duplicate_resolves_and_chains_in_date_order():
    # 0 labelled 2022; 1 (2024) semantic-matches 0; 2 (2025) is a near-duplicate of 1 only
    own = ["cn_k12", None, None]
    date = np.array([Y[2022], Y[2024], Y[2025]])
    att = resolve_lineage(own, date, np.array([0, 1, 2]), near={2: [(1, 0.85)], 1: [(2, 0.85)]},
                          semantic={1: [(0, 0.93)]})
    assert att[1].source == "cn_k12" and att[1].evidence == "semantic"
    assert att[2].source == "cn_k12" and att[2].evidence == "near" and att[2].via == 1


def test_near_below_threshold_and_undated_candidates_do_not_count():
    own = ["a", "b", None]
    date = np.array([Y[2022], NO_DATE, Y[2024]])
    att = resolve_lineage(own, date, np.array([0, 1, 2]), near={2: [(0, 0.79), (1, 0.99)]})
    assert att[2].evidence == "unattributed"


def test_known_source_pass():
    own = ["numina_olympiads", "olympiads"]
    date = np.array([Y[2024], Y[2022]])
    att = resolve_lineage(own, date, np.array([0, 1]), semantic={0: [(1, 0.96)]})
    assert att[0].source == "olympiads" and att[0].evidence == "known_source" and att[0].via == 1
    att = resolve_lineage(own, date, np.array([0, 1]), semantic={0: [(1, 0.5)]})
    assert att[0].source == "numina_olympiads" and att[0].evidence == "label"
