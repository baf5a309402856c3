"""Vectorised MinHash, LSH candidates (vs datasketch) and exact Jaccard (spec atlas.md §4.1 MinHash row)."""

import numpy as np

from mentor.lineage.minhash import (MinHashConfig, UnionFind, _perms, jaccard, jaccard_estimate, lsh_candidate_pairs,
                                    lsh_params, shingle_hashes, shingle_set, signatures)

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def sixty_words(seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=60))


def test_exact_jaccard_by_hand():
    # "abcdef" -> {abcde, bcdef}; "abcdeg" -> {abcde, bcdeg}: 1 shared of 3 distinct
    assert jaccard(shingle_set("abcdef"), shingle_set("abcdeg")) == 1 / 3
    assert shingle_set("ABCDEF") == shingle_set("abcdef")  # lower-cased
    assert len(shingle_set("ab")) == 1  # padded to one shingle


def test_shingle_counts_and_offsets():
    sh, off = shingle_hashes(["abcdefg", "ab", "hello"], 5)
    # 7 - 5 + 1 = 3 windows, a short text padded to 1, 5 - 5 + 1 = 1
    assert off.tolist() == [0, 3, 4, 5]
    assert len(sh) == 5


def test_signature_equals_python_reference_min():
    cfg = MinHashConfig(num_perm=16)
    text = "Find the number of apples."
    sh, _ = shingle_hashes([text], cfg.ngram)
    a, b = _perms(cfg)
    ref = [min(int(((int(a[j]) * int(x) + int(b[j])) % 2**64) >> 32) for x in sh) for j in range(cfg.num_perm)]
    assert signatures([text], cfg)[0].tolist() == ref


def test_block_size_does_not_change_signatures():
    texts = [sixty_words(s) for s in range(20)] + ["x", "short"]
    small = signatures(texts, MinHashConfig(block_shingles=7))
    big = signatures(texts, MinHashConfig(block_shingles=1 << 20))
    np.testing.assert_array_equal(small, big)


def test_identical_changed_word_unrelated():
    base = sixty_words(0)
    words = base.split()
    words[30] = "zzzzzz"
    changed = " ".join(words)
    other = sixty_words(1)
    sigs = signatures([base, base, changed, other])
    assert jaccard_estimate(sigs[0], sigs[1]) == 1.0
    exact = jaccard(shingle_set(base), shingle_set(changed))
    assert exact >= 0.8
    # 128 permutations: binomial sd <= 0.045, so 0.1 is > 2 sd (deterministic seed, not flaky)
    assert abs(jaccard_estimate(sigs[0], sigs[2]) - exact) < 0.1
    pairs = {tuple(p) for p in lsh_candidate_pairs(sigs).tolist()}
    assert (0, 2) in pairs and (1, 2) in pairs and (0, 1) in pairs
    assert not any(3 in p for p in pairs)


def test_lsh_candidates_equal_datasketch():
    from datasketch import MinHash, MinHashLSH

    cfg = MinHashConfig()
    rng = np.random.default_rng(3)
    texts = []
    for s in range(40):
        w = sixty_words(s).split()
        texts.append(" ".join(w))
        for _ in range(2):  # two edited copies with 1-6 words changed: some pass the LSH, some not
            w2 = list(w)
            for k in rng.choice(60, size=int(rng.integers(1, 7)), replace=False):
                w2[k] = str(rng.choice(WORDS))
            texts.append(" ".join(w2))
    sigs = signatures(texts, cfg)
    ours = {tuple(p) for p in lsh_candidate_pairs(sigs, cfg).tolist()}
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    assert (lsh.b, lsh.r) == lsh_params(cfg) == (9, 13)
    mhs = [MinHash(num_perm=cfg.num_perm, hashvalues=s.astype(np.uint64), scheme="affine32") for s in sigs]
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    theirs = {tuple(sorted((i, j))) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i}
    assert ours == theirs and len(ours) > 40


def test_large_bucket_keeps_connectivity_with_linear_pairs():
    sigs = np.tile(np.arange(128, dtype=np.uint32), (100, 1))  # 100 identical signatures
    pairs = lsh_candidate_pairs(sigs, MinHashConfig(max_bucket=10))
    assert len(pairs) == 99 + 98  # star (99) + chain (98), not 4950
    uf = UnionFind(100)
    for a, b in pairs:
        uf.union(int(a), int(b))
    assert set(uf.labels().tolist()) == {0}
