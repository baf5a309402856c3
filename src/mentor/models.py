"""Load policy / teacher / reference models, and build tiny ones locally.

Any Hugging Face causal LM loads by hub id or local directory (`load_model`, `load_tokenizer`). For the
quickstart and the tests, `build_tokenizer` makes a character-level fast tokenizer (printable ASCII,
newline, pad/eos/bos/unk and chat-role tokens, a chat template) and `build_tiny_model` a real Llama-architecture
model from a size preset (not Qwen2: transformers 5 forces `Qwen2Tokenizer` on any qwen2 folder, which drops
spaces and newlines of this vocabulary — PITFALLS.md). Both are saved with `save_pretrained` and reloaded through `AutoTokenizer` /
`AutoModelForCausalLM`, so the tests exercise exactly the path a hub model takes.

The string `tiny:PRESET` (e.g. `tiny:1m`) anywhere a model path is accepted builds a fresh random model of
that preset with the local tokenizer (seeded by `seed`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<eos>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Size presets for tiny Llama models: hidden, layers, heads, kv heads, intermediate.
# Measured parameter counts with the 104-token vocabulary are in the comments.
PRESETS: dict[str, dict[str, int]] = {
    "100k": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=256),
    "1m": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, intermediate_size=512),
    "6m": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8, intermediate_size=1024),
}


def build_tokenizer():
    """A character-level `PreTrainedTokenizerFast` that round-trips every printable ASCII string."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, BOS, UNK, *ROLE_TOKENS]
    vocab = {tok: i for i, tok in enumerate(specials + CHARS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=UNK,
        additional_special_tokens=list(ROLE_TOKENS), padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_model(tokenizer, preset: str = "1m", seed: int = 0, max_positions: int = 1024):
    """A randomly initialised Llama causal LM of a size preset, sized exactly to the tokenizer's vocabulary
    (no padded rows the sampler could emit)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if preset not in PRESETS:
        raise ValueError(f"unknown tiny-model preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, rope_theta=10000.0, **PRESETS[preset],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Sampling settings live in mentor's sampler, never in a generation config that silently adds top-k.
    model.generation_config.do_sample = False
    model.generation_config.top_k = None
    model.generation_config.top_p = None
    model.generation_config.temperature = None
    return model


def save_model(model, tokenizer, path: str | os.PathLike) -> Path:
    """Save a model and tokenizer as a normal Hugging Face directory, atomically (temp dir + rename)."""
    from .runs import atomic_dir, quiet_transformers

    quiet_transformers()
    path = Path(path)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _pin_tokenizer_class(tmp)
    return path


def _pin_tokenizer_class(path: Path) -> None:
    """Make `AutoTokenizer` restore the class that was saved (PITFALLS: a qwen2 folder otherwise loads a
    `Qwen2Tokenizer` that drops spaces and newlines)."""
    cfg_file = Path(path) / "tokenizer_config.json"
    if cfg_file.exists():
        cfg = json.loads(cfg_file.read_text())
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_file.write_text(json.dumps(cfg, indent=2))


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    if name_or_path.startswith("tiny:"):
        return build_tokenizer()
    tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(name_or_path: str, dtype: str = "float32", device: str = "cpu", seed: int = 0, tokenizer=None):
    """Load a causal LM by hub id, local directory, or `tiny:PRESET`."""
    from transformers import AutoModelForCausalLM

    if name_or_path.startswith("tiny:"):
        model = build_tiny_model(tokenizer or build_tokenizer(), preset=name_or_path[5:], seed=seed)
    else:
        if not (Path(name_or_path).exists() or "/" in name_or_path or os.environ.get("HF_HUB_OFFLINE") != "1"):
            raise FileNotFoundError(f"model {name_or_path!r}: no such directory")
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=resolve_dtype(dtype))
    return model.to(device=device, dtype=resolve_dtype(dtype))


def resolve_dtype(dtype: str) -> torch.dtype:
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype {dtype!r}: choose one of {sorted(table)}")
    return table[dtype]


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
