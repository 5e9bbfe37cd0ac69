"""Fixtures shared by the trainer tests."""

from __future__ import annotations

import pytest
from tiny_model import random_qwen3


@pytest.fixture
def tiny_world():
    """Factory of (tiny random Qwen3, toy char tokenizer, 4-problem dataset): seconds on a CPU."""
    from datasets import Dataset

    def make():
        model, tok = random_qwen3(max_positions=64)
        rows = [
            dict(
                prompt=[{"role": "user", "content": f"{i}+{i}"}],
                answer=str(2 * i),
                problem_id=f"p{i}",
            )
            for i in range(4)
        ]
        return model, tok, Dataset.from_list(rows)

    return make
