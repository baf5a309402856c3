"""Canonicalisation, exact keys and label cleaning for ATLAS (stages 0-1).

Paper: "RLVR Datasets and Where to Find Them: Tracing Data Lineage for Better Training Data"
(arXiv 2605.26971); official code Celine-hxy/ATLAS @ d048f53, `data_canonicalize/*` and `s1_edit_train_json.py`.

Variant implemented (spec atlas.md §2.1, stage 0/1):
- canonical text = known instruction wrappers stripped, whitespace runs collapsed to one space, trimmed;
  `key = sha1(canonical)`; `raw_key = sha1(str(prompt).strip())` (the official key, kept for compatibility).
- label cleaning through a versioned alias table (`ALIASES`, `ALIAS_TABLE_VERSION`) and dataset-id overrides.

Departures / gaps filled:
- The official code strips wrappers with per-dataset Python adapters; here wrappers are one list of regular
  expressions (`DEFAULT_WRAPPERS`) matched on the whitespace-normalised text, repeated until nothing changes,
  extendable per run (`CanonConfig.extra_wrappers`) or switched off.
- Optional LaTeX normalisation (`latex=True`: `\\dfrac`/`\\tfrac` -> `\\frac`, `\\left`/`\\right` dropped,
  `\\(`/`\\)` -> `$`, `^{x}` -> `^x` for one character) is off by default, as in the spec; the MinHash stage
  catches such edits anyway.
- The `utils.normalize_source` of the paper is not released; the alias table below is the one the spec lists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------- wrappers

#: (kind, regex) pairs matched against whitespace-normalised text. `prefix` patterns are anchored at the start,
#: `suffix` patterns at the end. Sources: DAPO-Math-17k prompt template, DAPO++ (`DAPO_Plus.parquet`) suffix,
#: the common Qwen/DeepSeek "Please reason step by step" suffix.
DEFAULT_WRAPPERS: tuple[tuple[str, str], ...] = (
    ("prefix", r"Solve the following math problem step by step\. The last line of your response should be of the "
               r"form Answer: \$Answer \(without quotes\) where \$Answer is the answer to the problem\.\s*"),
    ("prefix", r"Solve the following math problem step by step\.\s*"),
    ("prefix", r"(?:Problem|Question)\s*:\s*"),
    ("suffix", r"\s*Remember to put your answer on its own line after \"Answer:\"\.?"),
    ("suffix", r"\s*Let's think step by step and output the final answer within \\boxed\{\}\.?"),
    ("suffix", r"\s*Please reason step by step, and put your final answer within \\boxed\{\}\.?"),
    ("suffix", r"\s*(?:Answer|Solution)\s*:\s*"),
)

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class CanonConfig:
    """How prompts are canonicalised. Every field is part of the key: change it and keys change."""

    strip_wrappers: bool = True  # strip DEFAULT_WRAPPERS (+ extra_wrappers)
    extra_wrappers: tuple[tuple[str, str], ...] = ()  # more (kind, regex) pairs, kind in {"prefix", "suffix"}
    use_default_wrappers: bool = True  # False: only extra_wrappers are stripped
    collapse_whitespace: bool = True  # whitespace runs -> one space, trimmed
    latex: bool = False  # light LaTeX normalisation (see module docstring)
    _compiled: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        pairs = (DEFAULT_WRAPPERS if self.use_default_wrappers else ()) + tuple(self.extra_wrappers)
        compiled = []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and pair[0] in ("prefix", "suffix")):
                raise ValueError(f"CanonConfig wrapper #{i}: expected (\"prefix\"|\"suffix\", regex), got {pair!r}")
            kind, pattern = pair
            try:
                rx = re.compile(("^(?:" + pattern + ")") if kind == "prefix" else ("(?:" + pattern + ")$"))
            except re.error as e:
                raise ValueError(f"CanonConfig wrapper #{i} ({kind}): bad regex {pattern!r}: {e}") from None
            compiled.append(rx)
        object.__setattr__(self, "_compiled", tuple(compiled))

    def to_dict(self) -> dict:
        return {"strip_wrappers": self.strip_wrappers, "use_default_wrappers": self.use_default_wrappers,
                "extra_wrappers": [list(p) for p in self.extra_wrappers],
                "collapse_whitespace": self.collapse_whitespace, "latex": self.latex}


_LATEX_SUBS = (
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\(?:left|right)(?=[()\[\]|.]|\\[{}])"), ""),
    (re.compile(r"\\\(|\\\)"), "$"),
    (re.compile(r"\^\{(\w)\}"), r"^\1"),
)


def prompt_text(prompt) -> str:
    """The user text of a prompt given as a string or a chat list (`[{"role": "user", "content": ...}]`,
    as in verl/DAPO parquet files: all user turns are joined with a newline)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        parts = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role", "user") == "user"]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    raise TypeError(f"prompt must be a string or a list of chat messages with string 'content', got {type(prompt).__name__}")


def canonicalize(text: str, cfg: CanonConfig = CanonConfig()) -> str:
    """Canonical prompt text: whitespace collapsed, wrappers stripped (repeatedly), optional LaTeX rules."""
    s = _WS.sub(" ", text).strip() if cfg.collapse_whitespace else text.strip()
    if cfg.latex:
        for rx, rep in _LATEX_SUBS:
            s = rx.sub(rep, s)
    if cfg.strip_wrappers:
        changed = True
        while changed and s:
            changed = False
            for rx in cfg._compiled:
                t = rx.sub("", s, count=1).strip()
                if t != s and t:  # never strip a prompt down to nothing
                    s, changed = t, True
    return s


def discover_wrappers(rows_by_dataset: dict[str, list[str]], min_count: int = 20, min_frac: float = 0.01
                      ) -> tuple[tuple[str, str], ...]:
    """Dataset-specific instruction templates found from the data (mentor's addition): a first or last line of a
    multi-line prompt that recurs in at least `min_count` and `min_frac` of one dataset's sampled prompts is a
    wrapper. Returned as (kind, regex) pairs for `CanonConfig.extra_wrappers`; applied to every dataset, so that a
    problem wrapped in one dataset and bare in another still gets one key."""
    from collections import Counter

    found: set[tuple[str, str]] = set()
    for texts in rows_by_dataset.values():
        firsts, lasts = Counter(), Counter()
        for t in texts:
            lines = [_WS.sub(" ", x).strip() for x in t.split("\n")]
            lines = [x for x in lines if x]
            if len(lines) < 2:
                continue
            firsts[lines[0]] += 1
            lasts[lines[-1]] += 1
        need = max(min_count, min_frac * len(texts))
        for kind, counter in (("prefix", firsts), ("suffix", lasts)):
            for line, c in counter.items():
                if c >= need:
                    words = [re.escape(w) for w in line.split(" ")]
                    pat = r"\s+".join(words)
                    found.add((kind, pat + r"\s*" if kind == "prefix" else r"\s*" + pat))
    return tuple(sorted(found))


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def keys(prompt, cfg: CanonConfig = CanonConfig()) -> tuple[str, str, str]:
    """(canonical text, key = sha1(canonical), raw_key = sha1(str(prompt).strip())) of one prompt."""
    text = prompt_text(prompt)
    canon = canonicalize(text, cfg)
    return canon, sha1_hex(canon), sha1_hex(str(text).strip())


# ------------------------------------------------------------------------------------- label cleaning

ALIAS_TABLE_VERSION = "atlas-d048f53-v1"

#: stage-1 alias map (spec §2.1). A value of None drops the label (the record is then treated as unlabelled).
ALIASES: dict[str, str | None] = {
    "GSM8k_structured": "gsm8k",
    "addsub": "basic_arithmetic", "simuleq": "basic_arithmetic", "singleop": "basic_arithmetic",
    "singleq": "basic_arithmetic", "multiarith": "basic_arithmetic",
    "KlearReasoner": None, "math_dapo": None,
}
#: labels of whole datasets that are dropped (occurrence removed from the label vote).
DROPPED_LABEL_DATASETS = frozenset({"nvidia/OpenMathReasoning"})
#: dataset-id overrides: every row of the dataset carries this label.
DATASET_OVERRIDES: dict[str, str] = {"STILL-3": "still3", "AReaL-boba": "areal_boba"}
#: known-source pass: a record labelled with a key here is matched against records carrying the value.
KNOWN_SOURCE_PREFIXED: dict[str, str] = {
    f"numina_{s}": s for s in ("amc_aime", "aops_forum", "cn_k12", "olympiads", "synthetic_amc", "synthetic_math")
}


def clean_label(label, dataset: str) -> str | None:
    """Stage-1 label of one occurrence: dataset overrides, then aliases; DeepMath without a source ->
    `deepmath_stack_exchange`; empty strings -> None."""
    if dataset in DATASET_OVERRIDES:
        return DATASET_OVERRIDES[dataset]
    if dataset in DROPPED_LABEL_DATASETS:
        return None
    if label is None or (isinstance(label, str) and not label.strip()):
        return "deepmath_stack_exchange" if "deepmath" in dataset.lower() else None
    label = str(label).strip()
    return ALIASES.get(label, label)
