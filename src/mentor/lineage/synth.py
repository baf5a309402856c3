"""A synthetic lineage benchmark with known ground truth (mentor's design; spec atlas.md §4.2).

What it builds, deterministically from a seed:
- atomic-source corpora: one dataset per source, every row labelled with the source and dated with the source's
  release date (2019-2022). Problems are templated word problems with LaTeX (fractions, powers), built from a
  shared grammar but with *source-specific* nouns, places and adjectives, so that different sources do not look
  alike while problems inside one source share their template words;
- derived datasets (dated 2023, 2024, ...), unlabelled, whose rows copy earlier rows (atomic sources or earlier
  derived datasets) through one perturbation each: `copy`, `dapo_wrap` (the DAPO instruction template), `whitespace`
  (doubled spaces, newlines), `latex` (`\\frac` -> `\\dfrac`, `x^{2}` -> `x^2`, `$..$` -> `\\(..\\)`), `unknown_wrap`
  (a template canonicalisation does not know), `paraphrase` (synonym substitution and two sentences swapped), or are
  `novel` (new problems from a vocabulary no source uses; truth: unattributed);
- benchmarks (dated 2021) from their own vocabulary, and a set of benchmark items planted into the derived datasets
  with one of the same perturbations (the contamination ground truth).

Files: `<out>/<name>.jsonl` rows {"id", "prompt", "source", "date", "answer"}, and `<out>/truth.jsonl` rows
{"dataset", "id", "truth_source", "kind", "origin", "leak_of"} (leak_of: "benchmark:item-id" for planted rows).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCE_NAMES = ("olympiads", "cn_k12", "aops_forum", "amc_aime", "synthetic_math", "synthetic_amc", "gsm8k", "math",
                "orca_math", "metamath", "deepmath_stack_exchange", "still3", "areal_boba", "basic_arithmetic",
                "openr1", "limo", "big_math", "skywork", "polaris", "omni_math")

_NAMES = ("Ava", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
          "Marco", "Nadia", "Oscar", "Priya", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wei", "Ximena",
          "Yusuf", "Zoe", "Aiko", "Bruno", "Carmen", "Dario", "Emeka", "Freya", "Goran", "Hana", "Ivan", "Jasmin")
_NOUNS = """apple pear plum melon lemon mango peach grape cherry berry marble button coin stamp ticket badge
pencil eraser crayon ruler notebook folder candle lantern mirror vase bowl plate spoon kettle teapot cup
brick tile plank beam nail screw bolt hinge gear spring rope chain ribbon thread needle button-cell battery
sensor cable switch valve pump filter lens prism crystal pebble shell feather leaf acorn seed bulb sprout
kite drum flute violin trumpet bell whistle rattle puzzle domino dice card token chip bead pearl gem jewel
ring bracelet necklace brooch scarf glove sock boot hat cap jacket vest apron towel blanket pillow quilt
basket crate barrel bucket jar bottle flask tube vial cart wagon sled raft canoe kayak bicycle scooter
tractor crane drone rocket satellite comet meteor planet moon asteroid nebula galaxy quasar pulsar photon
atom molecule cell enzyme protein gene virus spore fungus algae coral sponge starfish urchin lobster crab
shrimp oyster clam squid octopus turtle lizard gecko iguana frog toad newt salamander owl hawk eagle falcon
sparrow robin finch wren heron stork crane-bird swan goose duck penguin puffin parrot macaw toucan pelican
fox wolf bear lynx otter beaver badger ferret weasel marten mink rabbit hare mouse hamster gerbil squirrel
chipmunk hedgehog bat mole shrew camel llama alpaca yak bison buffalo moose elk deer antelope gazelle zebra""".split()
_PLACES = """market bakery library museum harbor station garden orchard farm barn workshop factory warehouse
school campus stadium arena theater cinema gallery studio clinic hospital pharmacy bank office tower castle
palace temple chapel abbey fortress lighthouse island village town city county valley canyon desert forest
jungle meadow prairie tundra glacier volcano crater reef lagoon delta estuary marsh swamp bay cove beach
cliff ridge summit plateau basin quarry mine tunnel bridge dock pier wharf airport hangar depot terminal""".split()
_ADJS = """red blue green yellow purple orange silver golden bronze copper wooden stone glass paper plastic
steel iron velvet silk woolen cotton leather rubber ceramic marble granite crystal frozen heated polished
rusty shiny dusty ancient modern tiny huge narrow wide hollow solid striped spotted square circular
triangular oval hexagonal conical cubic spherical curved twisted folded layered""".split()
_DAYS = ("morning", "evening", "weekend", "Monday", "Tuesday", "holiday", "afternoon", "night")

_STATEMENTS = (
    "{name} has {n1} {o1}s and buys {n2} more {o1}s at the {p1}.",
    "Each {a1} {o2} costs ${n3}$ dollars, and {name2} pays with a budget of ${n4}$ dollars.",
    "A {a1} {o1} weighs $\\frac{{{n1}}}{{{n2}}}$ kilograms more than a {a2} {o2}.",
    "Let $x$ satisfy ${n1}x^{{2}} + {n2}x - {n3} = 0$ where $x$ counts the {o2}s in the {p1}.",
    "The {p1} stores {n5} {o2}s in {n2} equal boxes next to the {a2} {o1}s.",
    "A sequence of {o1}s starts at {n1} and each {day} the {p2} adds {n2} {o1}s.",
    "The area of a {a1} {o2} is ${n3}$ square meters and its width is ${n2}$ meters.",
    "{name} walks {n1} kilometers from the {p1} to the {p2} every {day}.",
    "In the {p2}, the ratio of {o1}s to {o2}s is $\\frac{{{n2}}}{{{n1}}}$.",
    "{name2} paints {n4} {a2} {o2}s, then gives {n2} of them to {name}.",
    "The probability that a random {o1} from the {p1} is {a1} equals $\\frac{{{n2}}}{{{n5}}}$.",
    "A {a2} {o2} is placed ${n1}$ meters east of the {p2} and ${n3}$ meters north of it.",
)
_QUESTIONS = (
    "How many {o1}s does {name} have in total?",
    "Find the value of $x$ when the {o2}s are counted twice.",
    "Compute the total weight of all {a1} {o1}s in kilograms.",
    "What is the remainder when the number of {o2}s is divided by {n2}?",
    "Determine the length of the {a1} {o2} in meters.",
    "How many {o2}s are left at the {p2} at the end?",
    "Find the distance between the {a2} {o2} and the {p2}.",
)
_SYNONYMS = (("How many", "What number of"), ("Find", "Determine"), ("Compute", "Calculate"), ("has", "owns"),
             ("buys", "purchases"), ("costs", "is priced at"), ("weighs", "has a mass of"),
             ("stores", "keeps"), ("starts at", "begins with"), ("walks", "travels on foot"), ("gives", "hands"),
             ("equals", "is equal to"), ("is placed", "sits"), ("in total", "altogether"),
             ("at the end", "finally"), ("Determine", "Work out"), ("What is", "Give"))

DAPO_PREFIX = ("Solve the following math problem step by step. The last line of your response should be of the form "
               "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n")
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'
UNKNOWN_WRAP = ("Below is a competition problem. Read it carefully.\n\n", "\n\nShow all intermediate reasoning.")

KINDS = ("copy", "dapo_wrap", "whitespace", "latex", "unknown_wrap", "paraphrase")


@dataclass
class Vocab:
    objs: list[str]
    places: list[str]
    adjs: list[str]


def _partition(rng: np.random.Generator, n_groups: int) -> list[Vocab]:
    """Disjoint noun / place / adjective sets per group (sources, then 'novel', then benchmarks)."""
    objs, places, adjs = (list(rng.permutation(x)) for x in (_NOUNS, _PLACES, _ADJS))
    k_o, k_p, k_a = len(objs) // n_groups, len(places) // n_groups, len(adjs) // n_groups
    if min(k_o, k_p, k_a) < 2:
        raise ValueError(f"synth: {n_groups} vocabulary groups is too many for the word lists")
    return [Vocab(objs[g * k_o:(g + 1) * k_o], places[g * k_p:(g + 1) * k_p], adjs[g * k_a:(g + 1) * k_a])
            for g in range(n_groups)]


def make_problem(rng: np.random.Generator, v: Vocab) -> tuple[str, str]:
    """One templated problem (2-3 statements + a question) and a pseudo-answer."""
    fill = {"name": _NAMES[rng.integers(len(_NAMES))], "name2": _NAMES[rng.integers(len(_NAMES))],
            "o1": v.objs[rng.integers(len(v.objs))], "o2": v.objs[rng.integers(len(v.objs))],
            "p1": v.places[rng.integers(len(v.places))], "p2": v.places[rng.integers(len(v.places))],
            "a1": v.adjs[rng.integers(len(v.adjs))], "a2": v.adjs[rng.integers(len(v.adjs))],
            "day": _DAYS[rng.integers(len(_DAYS))]}
    fill.update({f"n{i}": int(rng.integers(2, 1000)) for i in range(1, 6)})
    k = int(rng.integers(2, 4))
    st = rng.choice(len(_STATEMENTS), size=k, replace=False)
    text = " ".join(_STATEMENTS[i].format(**fill) for i in st) + " " + _QUESTIONS[rng.integers(len(_QUESTIONS))].format(**fill)
    return text, str(int(rng.integers(1, 10_000)))


def perturb(text: str, kind: str, rng: np.random.Generator) -> str:
    if kind == "copy":
        return text
    if kind == "dapo_wrap":
        return DAPO_PREFIX + text + DAPO_SUFFIX
    if kind == "whitespace":
        parts = text.split(" ")
        return "  ".join(parts[: len(parts) // 2]) + " \n " + " ".join(parts[len(parts) // 2:]) + "  "
    if kind == "latex":
        t = text.replace("\\frac", "\\dfrac").replace("x^{2}", "x^2")
        return re.sub(r"\$([^$]+)\$", r"\\(\1\\)", t, count=1)
    if kind == "unknown_wrap":
        return UNKNOWN_WRAP[0] + text + UNKNOWN_WRAP[1]
    if kind == "paraphrase":
        for a, b in _SYNONYMS:
            text = text.replace(a, b)
        sents = re.split(r"(?<=[.?])\s+", text)
        if len(sents) >= 3:
            sents[0], sents[1] = sents[1], sents[0]
        return " ".join(sents)
    raise ValueError(f"unknown perturbation {kind!r}; choose one of {', '.join(KINDS)}")


def build(out: str | Path, total_rows: int = 3000, n_sources: int = 6, n_derived: int = 3, n_benchmarks: int = 2,
          bench_items: int = 100, leak_fraction: float = 0.2, source_share: float = 0.5,
          mix: dict[str, float] | None = None, seed: int = 0) -> dict:
    """Write the benchmark under `out`; returns a manifest (dataset paths, dates, counts)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mix = mix or {"copy": 0.25, "dapo_wrap": 0.2, "whitespace": 0.15, "latex": 0.12, "unknown_wrap": 0.08,
                  "paraphrase": 0.1, "novel": 0.1}
    kinds, probs = list(mix), np.array(list(mix.values()), dtype=np.float64)
    probs /= probs.sum()
    vocab = _partition(rng, n_sources + 1 + n_benchmarks)
    sources = list(SOURCE_NAMES[:n_sources]) if n_sources <= len(SOURCE_NAMES) else [f"src{i}" for i in range(n_sources)]
    manifest = {"datasets": [], "benchmarks": [], "seed": seed}
    truth = open(out / "truth.jsonl", "w")

    def write(name: str, rows: list[dict], date: str, truths: list[dict]):
        with open(out / f"{name}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        for t in truths:
            truth.write(json.dumps({"dataset": name, **t}) + "\n")
        return {"name": name, "path": str(out / f"{name}.jsonl"), "date": date, "rows": len(rows)}

    # pool of (text, truth_source) that later datasets copy from
    pool_text: list[str] = []
    pool_truth: list[str | None] = []
    per_source = max(1, int(total_rows * source_share) // n_sources)
    for s, name in enumerate(sources):
        date = f"{2019 + s % 4}-{1 + s % 12:02d}-01"
        rows, truths = [], []
        for i in range(per_source):
            text, ans = make_problem(rng, vocab[s])
            rid = f"{name}-{i}"
            rows.append({"id": rid, "prompt": text, "source": name, "date": date, "answer": ans})
            truths.append({"id": rid, "truth_source": name, "kind": "source", "origin": None, "leak_of": None})
            pool_text.append(text)
            pool_truth.append(name)
        manifest["datasets"].append(write(name, rows, date, truths))

    benches = []
    for b in range(n_benchmarks):
        name = f"bench{b}"
        items = [make_problem(rng, vocab[n_sources + 1 + b]) for _ in range(bench_items)]
        rows = [{"id": f"{name}-{i}", "prompt": t, "answer": a} for i, (t, a) in enumerate(items)]
        benches.append((name, rows))
        p = out / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        manifest["benchmarks"].append({"name": name, "path": str(p), "items": len(rows)})
    # which benchmark items are planted, and into which derived dataset / with which perturbation
    leaks = []
    for name, rows in benches:
        for i in rng.choice(len(rows), size=int(round(leak_fraction * len(rows))), replace=False):
            leaks.append((name, rows[int(i)], str(rng.choice(KINDS)), int(rng.integers(n_derived))))
    manifest["planted"] = [{"benchmark": n, "id": r["id"], "kind": k, "dataset": f"derived{d}"} for n, r, k, d in leaks]

    per_derived = max(1, (total_rows - per_source * n_sources) // max(n_derived, 1))
    for d in range(n_derived):
        name, date = f"derived{d}", f"{2023 + d}-06-01"
        rows, truths, new_text, new_truth = [], [], [], []
        for i in range(per_derived):
            kind = kinds[rng.choice(len(kinds), p=probs)]
            rid = f"{name}-{i}"
            if kind == "novel":
                text, ans = make_problem(rng, vocab[n_sources])
                src, origin = None, None
            else:
                j = int(rng.integers(len(pool_text)))
                text, src, origin = perturb(pool_text[j], kind, rng), pool_truth[j], j
                ans = str(int(rng.integers(1, 10_000)))
            rows.append({"id": rid, "prompt": text, "source": None, "date": date, "answer": ans})
            truths.append({"id": rid, "truth_source": src, "kind": kind, "origin": origin, "leak_of": None})
            if kind in ("novel", "copy"):
                new_text.append(text)
                new_truth.append(src)
        for bname, item, kind, dd in leaks:
            if dd == d:
                rid = f"{name}-leak-{item['id']}"
                rows.append({"id": rid, "prompt": perturb(item["prompt"], kind, rng), "source": None, "date": date,
                             "answer": item["answer"]})
                truths.append({"id": rid, "truth_source": None, "kind": f"leak:{kind}", "origin": None,
                               "leak_of": f"{bname}:{item['id']}"})
        manifest["datasets"].append(write(name, rows, date, truths))
        pool_text += new_text  # later derived datasets copy from this one too
        pool_truth += new_truth
    truth.close()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def dataset_args(manifest: dict) -> list[str]:
    """`NAME=PATH@DATE` arguments for `mentor data trace` (dates are also in the rows)."""
    return [f"{d['name']}={d['path']}@{d['date']}" for d in manifest["datasets"]]


def attribution_accuracy(truth_path: str | Path, lineage) -> dict:
    """Fraction of rows whose traced atomic source equals the truth (None == unattributed), overall and per kind.
    `lineage` is the trace's lineage table as a pandas DataFrame."""
    import pandas as pd

    t = pd.read_json(truth_path, lines=True)
    t["truth_source"] = t["truth_source"].astype(object).where(t["truth_source"].notna(), None)
    m = t.merge(lineage[["dataset", "row_id", "atomic_source"]], left_on=["dataset", "id"],
                right_on=["dataset", "row_id"], how="left", validate="one_to_one")
    if m["row_id"].isna().any():
        raise ValueError(f"attribution_accuracy: {int(m['row_id'].isna().sum())} truth rows missing from the lineage table")
    pred = m["atomic_source"].astype(object).where(m["atomic_source"].notna(), None)
    ok = np.array([a == b for a, b in zip(pred, m["truth_source"])])
    per_kind = {k: float(ok[(m["kind"] == k).to_numpy()].mean()) for k in sorted(m["kind"].unique())}
    return {"rows": int(len(m)), "accuracy": float(ok.mean()), "per_kind": per_kind,
            "errors": int((~ok).sum())}
