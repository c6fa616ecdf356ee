"""Usage metadata in either provider's format, and value-type validation."""

from __future__ import annotations

import pytest

from streamcheck.impl import UsageMetadata, read_usage
from streamcheck.model import Chunk, Gap, GapReason


def test_openai_usage_counts_cached_tokens_as_cache_reads() -> None:
    usage = read_usage(
        {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 100},
            "model": "gpt-x",
        }
    )
    assert usage == UsageMetadata(
        input_tokens=120, output_tokens=30, cache_read_tokens=100, model="gpt-x"
    )
    assert usage.total_tokens == 150


def test_anthropic_usage_reads_both_cache_counters() -> None:
    usage = read_usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 200,
            "cache_creation_input_tokens": 50,
        }
    )
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (200, 50)


def test_langchain_usage_reads_input_token_details() -> None:
    usage = read_usage(
        {
            "input_tokens": 7,
            "output_tokens": 3,
            "input_token_details": {"cache_read": 4, "cache_creation": 1},
        }
    )
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (4, 1)


def test_garbage_usage_fields_count_as_zero() -> None:
    usage = read_usage({"prompt_tokens": "many", "completion_tokens": True})
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)


def test_events_refuse_invalid_seqs() -> None:
    with pytest.raises(ValueError, match=r"^Chunk.seq must be a non-negative integer, got -1$"):
        Chunk(seq=-1, generation="g", data=None)
    with pytest.raises(ValueError, match=r"must be >= first_seq"):
        Gap(first_seq=5, last_seq=4, generation="g", reason=GapReason.NOT_IN_LOG)
