"""Test support shipped with eventcore: the store contract suite and test helpers."""
