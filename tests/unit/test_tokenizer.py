"""The character-level tokenizer survives save_model -> AutoTokenizer on every character the tasks and data use."""

from __future__ import annotations

import random

import pytest

from mentor.models import CHARS, build_tiny_model, build_tokenizer, save_model
from mentor.tasks import TASKS, get_task
from mentor.tasks.data import gsm8k_fixture_path


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = build_tokenizer()
    path = save_model(build_tiny_model(tok, "100k"), tok, tmp_path_factory.mktemp("m") / "model")
    loaded = AutoTokenizer.from_pretrained(path)
    assert type(loaded) is PreTrainedTokenizerFast  # PITFALLS: not a Qwen2Tokenizer that drops spaces
    return tok, loaded


def _task_texts() -> list[str]:
    rng = random.Random(0)
    settings = [get_task(name) for name in TASKS] + [
        get_task("count", letters=26, length=40), get_task("expr", ops=8), get_task("chain", steps=30),
        get_task("mul", digits=4, mult_digits=3), get_task("sort", length=10, max_value=10**6),
    ]
    texts = []
    for task in settings:
        for _ in range(20):
            p = task.generate(rng)
            texts += [p.prompt, p.trace, p.prompt + p.trace]
    texts.append(get_task("expr").problem(expr="3-(4+5)*2").trace)  # negative numbers, "(-3)"
    return texts


def test_every_task_character_round_trips(tokenizers):
    tok, loaded = tokenizers
    texts = _task_texts()
    used = set("".join(texts))
    assert used <= set(CHARS)
    assert set("0123456789+-*%=,;:|>()") <= used and set("abcdefghijklmnopqrstuvwxyz") <= used
    for text in texts:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text) and loaded.unk_token_id not in ids  # one token per character, none unknown
        assert loaded.decode(ids) == text


def test_all_printable_characters_spaces_and_newlines(tokenizers):
    _, loaded = tokenizers
    text = "".join(CHARS) + "  two  spaces\n\nblank line\tx"  # the tab is not in the vocabulary
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert ids.count(loaded.unk_token_id) == 1
    assert loaded.decode(ids).replace(loaded.unk_token, "\t") == text
    fixture = gsm8k_fixture_path().read_text()
    ids = loaded(fixture, add_special_tokens=False)["input_ids"]
    assert loaded.unk_token_id not in ids and loaded.decode(ids) == fixture


def test_special_tokens_and_eos(tokenizers):
    tok, loaded = tokenizers
    assert (loaded.eos_token, loaded.pad_token, loaded.padding_side) == ("<eos>", "<pad>", "left")
    assert loaded.eos_token_id == tok.eos_token_id and len(loaded) == len(tok)
    ids = loaded("4:8<eos>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == loaded.eos_token_id and len(ids) == 4  # "4", ":", "8", "<eos>"
    assert loaded.decode(ids, skip_special_tokens=True) == "4:8"


def test_chat_template_round_trip(tokenizers):
    tok, loaded = tokenizers
    messages = [{"role": "system", "content": "Add."}, {"role": "user", "content": "864+394="},
                {"role": "assistant", "content": "4+4+0=08:1258"}, {"role": "user", "content": "1 + 1 ="}]
    text = loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|assistant|>") and "<|assistant|>4+4+0=08:1258<eos>" in text and "1 + 1 =" in text
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert loaded.decode(ids) == text
    for role in ("<|system|>", "<|user|>", "<|assistant|>"):  # role markers are single tokens
        assert len(loaded(role, add_special_tokens=False)["input_ids"]) == 1
