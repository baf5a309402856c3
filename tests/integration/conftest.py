"""Fixtures shared by the integration tests: one random tiny teacher per test session, and the comparison of two
runs' metrics without their timing fields (bit-for-bit resume tests)."""

import pytest

VOLATILE = ("time/", "tokens_per_s")


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A random tiny:100k model saved as an HF directory: a teacher that shares the student's tokenizer."""
    from mentor.models import build_tiny_model, build_tokenizer, save_model

    tok = build_tokenizer()
    return str(save_model(build_tiny_model(tok, "100k", seed=123), tok, tmp_path_factory.mktemp("t") / "teacher"))


def _stable(records, extra_volatile=()):
    volatile = VOLATILE + tuple(extra_volatile)
    return [{k: v for k, v in r.items() if not k.startswith(volatile)} for r in records]


@pytest.fixture
def stable():
    """`stable(records, extra_volatile=())`: metrics records without wall-clock fields."""
    return _stable
