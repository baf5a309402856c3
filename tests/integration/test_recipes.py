"""Every shipped recipe parses; the real-model recipes' data path runs on the local GSM8K-style fixture."""

from pathlib import Path

import pytest

from mentor.config import load_config
from mentor.models import build_tokenizer
from mentor.tasks.data import gsm8k_fixture_path, load_rows, render_prompt

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_parses(recipe):
    load_config(recipe)


@pytest.mark.parametrize("name", ["grpo-gsm8k", "opd-qwen3-math"])
def test_gsm8k_recipes_data_path_on_fixture(name):
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
    assert cfg.data.path == "openai/gsm8k:main" and cfg.data.verifier == "math"
    rows = load_rows(str(gsm8k_fixture_path()), fields=cfg.data.fields, verifier=cfg.data.verifier)
    assert len(rows) >= 20 and all(r.verifier == "math" and r.answer for r in rows)
    text = render_prompt(build_tokenizer(), rows[0], cfg.data.prompt_template)
    assert text.startswith(rows[0].text) and text.endswith("within \\boxed{}.")
    from mentor.evaluate import score_completion

    assert score_completion(f"so the answer is \\boxed{{{rows[0].answer}}}", rows[0]) == 1.0
