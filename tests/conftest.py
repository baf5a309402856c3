"""Shared fixtures. Slow-tier tests share run-wide trained models (built once per test run) so the whole
suite stays within CI's budget."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tokenizer():
    from mentor.models import build_tokenizer

    return build_tokenizer()
