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


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (12x slower on a busy 2-core machine).
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
