"""Canonicalisation, keys, wrapper discovery and label cleaning (spec atlas.md §4.1)."""

import pytest

from mentor.lineage.canon import CanonConfig, canonicalize, clean_label, discover_wrappers, keys, prompt_text, sha1_hex
from mentor.lineage.synth import DAPO_PREFIX, DAPO_SUFFIX


def test_sha1_of_abc():
    # FIPS 180 test vector
    assert sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_dapo_wrapper_and_double_spaces_give_the_bare_key():
    wrapped = DAPO_PREFIX + "Find  x." + DAPO_SUFFIX
    canon, key, raw_key = keys(wrapped)
    assert canon == "Find x."
    assert key == keys("Find x.")[1] == sha1_hex("Find x.")
    # the raw key (official ATLAS key) is sha1 of the stripped raw prompt, so it differs
    assert raw_key == sha1_hex(wrapped.strip()) != key


def test_whitespace_runs_collapse_and_trim():
    assert canonicalize("  a\n\tb   c \n") == "a b c"
    assert canonicalize("  a\n\tb ", CanonConfig(collapse_whitespace=False)) == "a\n\tb"


def test_wrappers_off_keep_the_template():
    assert canonicalize("Problem: Find x.", CanonConfig(strip_wrappers=False)) == "Problem: Find x."
    assert canonicalize("Problem: Find x.") == "Find x."


def test_wrapper_never_strips_everything():
    assert canonicalize("Answer:") == "Answer:"


def test_extra_wrapper_and_bad_regex_message():
    cfg = CanonConfig(extra_wrappers=(("suffix", r"\s*Think carefully!"),))
    assert canonicalize("Find x. Think carefully!", cfg) == "Find x."
    with pytest.raises(ValueError, match=r"wrapper #7 \(prefix\): bad regex"):
        CanonConfig(extra_wrappers=(("prefix", "(unclosed"),))
    with pytest.raises(ValueError, match="expected"):
        CanonConfig(extra_wrappers=(("middle", "x"),))


def test_latex_normalisation():
    cfg = CanonConfig(latex=True)
    assert canonicalize(r"\dfrac{1}{2} + \left( x^{2} \right) = \(y\)", cfg) == r"\frac{1}{2} + ( x^2 ) = $y$"
    assert canonicalize(r"\dfrac{1}{2}") == r"\dfrac{1}{2}"  # off by default


def test_chat_prompt_joins_user_turns():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Find x."}]
    assert prompt_text(msgs) == "Find x."
    with pytest.raises(TypeError, match="chat messages"):
        prompt_text(42)


def test_discovered_wrapper_maps_wrapped_rows_to_bare_keys():
    rows = [f"Read the task below.\nCompute {i} plus {i + 1}.\nShow work." for i in range(30)]
    found = discover_wrappers({"d": rows}, min_count=20)
    assert ("prefix", r"Read\s+the\s+task\s+below\.\s*") in found
    assert ("suffix", r"\s*Show\s+work\.") in found
    cfg = CanonConfig(extra_wrappers=found)
    assert keys(rows[3], cfg)[1] == keys("Compute 3 plus 4.", cfg)[1]
    # 19 occurrences are below min_count: nothing found
    assert discover_wrappers({"d": rows[:19]}, min_count=20) == ()


def test_label_cleaning():
    assert clean_label("GSM8k_structured", "x") == "gsm8k"
    assert clean_label("addsub", "x") == "basic_arithmetic"
    assert clean_label("math_dapo", "x") is None
    assert clean_label(None, "DeepMath-103K") == "deepmath_stack_exchange"
    assert clean_label("anything", "STILL-3") == "still3"
    assert clean_label("  ", "x") is None
    assert clean_label("olympiads", "nvidia/OpenMathReasoning") is None
