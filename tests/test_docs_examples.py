"""Every ```python block of the documentation (docs/**/*.md) runs as written.

Each block is a self-contained program, run in a fresh subprocess from an empty
temporary directory (so SQLite files it creates land there). A block whose fence
carries a title naming a test module (```python title="tests/test_shop.py"```)
is a test module: it is run with pytest, with eventcore's plugin loaded and the
PostgreSQL test server named when one is reachable. A block followed by a
```text title="Output"``` block must print exactly that. Configuration that
cannot run here is shown as ```text, not ```python. The README's example is run
by tests/test_readme.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests import pg

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(r"^(`{3,})(\w*)[ \t]*(.*)$")
_TITLE = re.compile(r'title="([^"]*)"')


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    code: str
    title: str | None
    output: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"

    @property
    def is_test_module(self) -> bool:
        return self.title is not None and Path(self.title).name.startswith("test_")


@dataclass(frozen=True)
class _Block:
    line: int
    language: str
    title: str | None
    code: str
    end: int  # the line after the closing fence


def _blocks(text: str) -> list[_Block]:
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, language, attributes = opening.groups()
        body = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index])
            index += 1
        title = _TITLE.search(attributes)
        code = "\n".join(body) + "\n"
        blocks.append(_Block(index - len(body), language, title and title.group(1), code, index))
        index += 1
    return blocks


def _examples(page: Path) -> list[Example]:
    lines = page.read_text().splitlines()
    blocks = _blocks(page.read_text())
    found = []
    for index, block in enumerate(blocks):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if block.language != "python":
            continue
        output = None
        between = lines[block.end + 1 : following.line - 1] if following else ["x"]
        if following and following.title == "Output" and not any(s.strip() for s in between):
            output = following.code
        found.append(Example(page, block.line, block.code, block.title, output))
    return found


def _all_examples() -> list[Example]:
    pages = sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)
    return [example for page in pages for example in _examples(page)]


EXAMPLES = _all_examples()


def test_the_docs_have_examples_and_every_fence_is_seen() -> None:
    assert len(EXAMPLES) >= 10
    # A ```py or ```python3 fence would escape this test: the docs use ```python only.
    for page in DOCS.rglob("*.md"):
        for block in _blocks(page.read_text()):
            assert block.language not in {"py", "python3", "pycon"}, f"{page}:{block.line}"


def test_the_extractor_pairs_an_example_with_its_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '# Page\n\n```python\nprint(1)\n```\n\n```text title="Output"\n1\n```\n\n'
        '```python title="tests/test_x.py"\ndef test_x(): pass\n```\n\n'
        'text\n\n```text title="Output"\nnot its output\n```\n'
    )
    first, second = _examples(page)
    assert (first.code, first.output, first.line) == ("print(1)\n", "1\n", 3)
    assert second.is_test_module
    assert second.output is None


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@functools.cache
def _postgres_url() -> str | None:
    return pg.PG_URL if asyncio.run(_reachable(pg.PG_URL)) else None


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_the_example_runs(example: Example, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVENTCORE_TEST_POSTGRES_URL"}
    if example.is_test_module:
        assert example.title is not None
        module = tmp_path / Path(example.title).name
        url = _postgres_url()
        if url is not None:
            env["EVENTCORE_TEST_POSTGRES_URL"] = url
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"]
        # What a project sets in its pytest configuration (pytest-asyncio warns otherwise).
        command += ["-o", "asyncio_default_fixture_loop_scope=function", module.name]
    else:
        module = tmp_path / "example.py"
        command = [sys.executable, module.name]
    module.write_text(example.code)
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, f"{example.name} failed:\n{run.stdout}\n{run.stderr}"
    if example.output is not None:
        assert run.stdout == example.output, f"{example.name} printed:\n{run.stdout}"
