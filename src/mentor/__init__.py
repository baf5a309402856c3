"""mentor: post-training language models with reinforcement learning and on-policy distillation."""

__version__ = "0.1.0"
