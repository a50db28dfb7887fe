"""Stream patterns mean the same thing everywhere: fnmatch, Python regex, SQLite and
PostgreSQL regex."""

from __future__ import annotations

import fnmatch
import random

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventcore._glob import literal_prefix, matches, postgres_regex
from tests import pg

# Characters that are special to globs, Python regex, PostgreSQL regex or sets.
ALPHABET = "ab-]![^\\*?.$(){}|+zé"
patterns = st.text(alphabet=ALPHABET, max_size=8)
ids = st.text(alphabet="ab-]!^\\.$(){}|+zé[*?", max_size=6)


@settings(max_examples=3000, deadline=None)
@given(patterns, ids)
def test_python_matcher_agrees_with_fnmatchcase(pattern: str, stream_id: str) -> None:
    assert matches(stream_id, pattern) == fnmatch.fnmatchcase(stream_id, pattern)


@settings(max_examples=1000)
@given(patterns, ids)
def test_every_match_starts_with_the_literal_prefix(pattern: str, stream_id: str) -> None:
    prefix = literal_prefix(pattern)
    assert pattern.startswith(prefix)
    if matches(stream_id, pattern):
        assert stream_id.startswith(prefix)


def _random_cases(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pattern_chars = ALPHABET
    id_chars = "ab-]!^\\.$(){}|+zé[*?"
    cases = []
    for _ in range(count):
        pattern = "".join(rng.choice(pattern_chars) for _ in range(rng.randint(0, 8)))
        stream_id = "".join(rng.choice(id_chars) for _ in range(rng.randint(0, 6)))
        cases.append((pattern, stream_id))
    return cases


@pytest.mark.postgres
async def test_postgres_regex_agrees_with_the_python_matcher() -> None:
    await pg.require_server()
    cases = [
        *_random_cases(3000, seed=7),
        ("[]]", "]"),
        ("[!]]", "a"),
        ("[z-a]", "m"),
        ("[!z-a]", "m"),
        ("[a-]", "-"),
        ("[\\\\]", "\\"),
        ("[^a]", "^"),
        ("[[]", "["),
        ("a[", "a["),
        ("*.$", "x.$"),
        ("acc-?", "acc-1"),
        ("[!a]-1", "b-1"),
    ]
    translatable = [(p, i, postgres_regex(p)) for p, i in cases]
    checked = [(p, i, r) for p, i, r in translatable if r is not None]
    conn = await asyncpg.connect(pg.PG_URL)
    try:
        results = await conn.fetchval(
            "SELECT array_agg(t.s ~ t.r ORDER BY t.n) "
            "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(s, r, n)",
            [i for _, i, _ in checked],
            [r for _, _, r in checked],
        )
    finally:
        await conn.close()
    mismatches = [
        (p, i, r) for (p, i, r), got in zip(checked, results, strict=True) if got != matches(i, p)
    ]
    assert mismatches == []
    # patterns PostgreSQL cannot express (an empty set) match nothing in Python too
    assert not any(matches(i, p) for p, i, r in translatable if r is None)
    assert sum(matches(i, p) for p, i, _ in checked) > 50, "too few positive cases"
