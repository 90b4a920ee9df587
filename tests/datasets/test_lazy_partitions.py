"""LazyPartitions: a sorted, read-only mapping whose values are built on access from columns."""

from __future__ import annotations

import pytest

from unmask.datasets import LazyPartitions


def test_behaves_like_a_read_only_dict_in_key_order():
    made = []

    def make(i):
        made.append(i)
        return f"job{i}"

    lazy = LazyPartitions(["b", "c", "a"], make)
    assert made == []  # nothing is built up front
    assert len(lazy) == 3 and list(lazy) == ["a", "b", "c"]
    assert lazy["c"] == "job1" and made == [1]
    assert "a" in lazy and "z" not in lazy and 3 not in lazy
    assert list(lazy.items()) == [("a", "job2"), ("b", "job0"), ("c", "job1")]
    assert lazy == {"a": "job2", "b": "job0", "c": "job1"}
    assert lazy.get("z") is None
    with pytest.raises(KeyError):
        lazy["z"]
    assert LazyPartitions([], make) == {} and list(LazyPartitions([], make)) == []
    assert "3 partitions" in repr(lazy)


def test_duplicate_keys_are_rejected():
    with pytest.raises(ValueError, match="'x'"):
        LazyPartitions(["x", "y", "x"], str)
