"""Near-duplicate search for ATLAS: vectorised MinHash, banded LSH, exact-Jaccard verification, union-find.

The official ATLAS code (Celine-hxy/ATLAS @ d048f53) has no near-duplicate stage (exact SHA-1 + MiniLM cosine
only); this stage is mentor's addition (spec atlas.md §2.1, "near duplicates"): shingles are character 5-grams of
the lower-cased canonical text, 128 permutations, LSH threshold 0.8, every candidate pair verified by exact
Jaccard >= 0.8, clusters by union-find.

Implementation choices (and how they depart from datasketch, whose LSH parameters we use):
- Shingles are 5-byte windows of the UTF-8 text (equal to character 5-grams for ASCII); texts shorter than five
  bytes are padded with NUL bytes so that every text has at least one shingle.
- Each shingle (a 40-bit integer) is mixed to 64 bits, then permutation j is the multiply-shift hash
  `h_j(x) = (a_j * x + b_j mod 2**64) >> 32` with random odd `a_j` -- computed for a whole block of texts as one
  (shingles x permutations) numpy array and reduced per text with `np.minimum.reduceat`. datasketch's
  `MinHash.update` uses sha1 + `(a x + b) mod (2**61 - 1)` per text in Python (~1 ms per 175-shingle prompt);
  this is the same estimator (P[min equal] = Jaccard for a min-wise family) at ~50x the speed.
- Bands/rows `(b, r)` come from datasketch's `_optimal_param(threshold, num_perm, 0.5, 0.5)` (9 x 13 for
  0.8/128) so that candidates equal those of `datasketch.MinHashLSH` on the same signatures (tested); bucket keys
  are a random linear hash of the band's r values. A bucket with more than `max_bucket` members emits a star
  plus a chain (2k pairs) instead of all k^2/2 pairs: connectivity is kept, pair counts stay linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class MinHashConfig:
    ngram: int = 5  # shingle width in bytes of the lower-cased UTF-8 canonical text
    num_perm: int = 128  # permutations (signature length)
    threshold: float = 0.8  # LSH design threshold and the exact-Jaccard acceptance threshold
    seed: int = 1  # permutation seed (signatures are comparable only under the same seed and num_perm)
    max_bucket: int = 64  # buckets larger than this emit star+chain pairs only
    block_shingles: int = 1024  # shingles per vectorised block (block x num_perm x 8 bytes; cache-sized is fastest)

    def __post_init__(self):
        if self.ngram < 1 or self.num_perm < 2 or not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"MinHashConfig: need ngram >= 1, num_perm >= 2, 0 < threshold <= 1; got {self}")
        if self.ngram > 8:
            raise ValueError(f"MinHashConfig.ngram={self.ngram}: at most 8 bytes fit one 64-bit shingle")


def _perms(cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    a = rng.integers(0, 2**63, size=cfg.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=cfg.num_perm, dtype=np.uint64)
    return a, b


def shingle_hashes(texts: list[str], ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """All byte n-gram shingles of the lower-cased texts as mixed 64-bit values, concatenated, and the offset of
    each text's first shingle (len(texts) + 1 offsets). Duplicates are kept (the minimum does not care)."""
    bufs = [t.lower().encode("utf-8") for t in texts]
    bufs = [b if len(b) >= ngram else b + b"\0" * (ngram - len(b)) for b in bufs]
    lens = np.fromiter((len(b) for b in bufs), dtype=np.int64, count=len(bufs))
    data = np.frombuffer(b"".join(bufs), dtype=np.uint8).astype(np.uint64)
    n_sh = lens - ngram + 1
    starts = np.zeros(len(bufs) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    gram = np.zeros(max(len(data) - ngram + 1, 0), dtype=np.uint64)
    for k in range(ngram):
        gram |= data[k:len(data) - ngram + 1 + k] << np.uint64(8 * k)
    # keep windows that start inside a text and end inside the same text
    offsets = np.zeros(len(bufs) + 1, dtype=np.int64)
    np.cumsum(n_sh, out=offsets[1:])
    pos = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts[:-1] - offsets[:-1], n_sh)
    sh = gram[pos] * _MIX
    sh ^= sh >> np.uint64(29)
    return sh, offsets


def signatures(texts: list[str], cfg: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """MinHash signatures, uint32 array [len(texts), num_perm]."""
    a, b = _perms(cfg)
    out = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
    group = 2048  # texts shingled at once; the (shingles x perms) product is done in cache-sized blocks
    for g in range(0, len(texts), group):
        sh, off = shingle_hashes(texts[g:g + group], cfg.ngram)
        n = len(off) - 1
        i = 0
        while i < n:
            # texts i..j-1 whose shingles fit block_shingles (a single long text is its own block)
            j = int(np.searchsorted(off, off[i] + cfg.block_shingles, side="right")) - 1
            j = min(max(j, i + 1), n)
            h = np.multiply.outer(sh[off[i]:off[j]], a)  # [S, P], wraps mod 2**64
            h += b
            h >>= np.uint64(32)
            out[g + i:g + j] = np.minimum.reduceat(h, off[i:j] - off[i], axis=0)
            i = j
    return out


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


def shingle_set(text: str, ngram: int = 5) -> frozenset:
    b = text.lower().encode("utf-8")
    if len(b) < ngram:
        b = b + b"\0" * (ngram - len(b))
    return frozenset(b[i:i + ngram] for i in range(len(b) - ngram + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def lsh_params(cfg: MinHashConfig) -> tuple[int, int]:
    """(bands, rows) exactly as datasketch.MinHashLSH chooses them."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(cfg.threshold, cfg.num_perm, 0.5, 0.5)


def lsh_candidate_pairs(sigs: np.ndarray, cfg: MinHashConfig = MinHashConfig(), ids: np.ndarray | None = None) -> np.ndarray:
    """Candidate pairs (i < j, int64 [n, 2], unique, sorted) of rows sharing at least one LSH band bucket.
    `ids` maps signature rows to the ids written in the pairs (default: row numbers)."""
    n = len(sigs)
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    bands, rows = lsh_params(cfg)
    rng = np.random.default_rng(cfg.seed + 7919)
    mult = rng.integers(0, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    chunks = []
    for band in range(bands):
        block = sigs[:, band * rows:(band + 1) * rows].astype(np.uint64)
        key = (block * mult).sum(axis=1)  # wraps mod 2**64
        key += np.uint64(band)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        boundary = np.flatnonzero(np.diff(ks) != 0) + 1
        starts = np.concatenate([[0], boundary])
        sizes = np.diff(np.concatenate([starts, [n]]))
        multi = sizes >= 2
        # groups of size 2: vectorised
        s2 = starts[multi & (sizes == 2)]
        if len(s2):
            chunks.append(np.stack([ids[order[s2]], ids[order[s2 + 1]]], axis=1))
        for s, k in zip(starts[multi & (sizes > 2)], sizes[multi & (sizes > 2)]):
            mem = ids[order[s:s + k]]
            if k <= cfg.max_bucket:
                iu, ju = np.triu_indices(k, 1)
                chunks.append(np.stack([mem[iu], mem[ju]], axis=1))
            else:
                star = np.stack([np.full(k - 1, mem[0]), mem[1:]], axis=1)
                chain = np.stack([mem[1:-1], mem[2:]], axis=1)
                chunks.append(np.concatenate([star, chain]))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


class UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smaller id is the root: deterministic clusters

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
