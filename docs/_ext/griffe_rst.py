"""A griffe extension: read eventcore's reST-flavoured docstrings as Markdown.

The docstrings are written for people reading the source (and for Sphinx): roles
such as :class:`~eventcore.errors.VersionConflict`, ``double backquotes`` and
``::`` before an indented example. mkdocstrings renders docstrings as Markdown, so
this rewrites them when the API reference loads them, leaving the source alone:

- a role becomes an *optional* cross-reference: a link when its target is on a
  page of the site, plain code (and no warning) when it is not (private modules);
- ````x```` becomes ```x```; ``\\ `` (reST's "no space here") is dropped;
- a paragraph ending in ``::`` ends in ``:``; the indented block after it is a
  Markdown code block already.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`([^`]+)`")
_TITLED = re.compile(r"(.+?)\s*<([^>]+)>")
_LITERAL = re.compile(r"``(.+?)``")


def _reference(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    titled = _TITLED.fullmatch(target)
    if titled:
        title, identifier = titled.group(1), titled.group(2)
    else:
        identifier = target.lstrip("~")
        title = identifier.rsplit(".", 1)[-1] if target.startswith("~") else identifier
    identifier = identifier.lstrip("~.")
    return (
        f'<autoref identifier="{html.escape(identifier)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def markdown_of(text: str) -> str:
    """The Markdown reading of a reST-flavoured docstring."""
    text = _ROLE.sub(_reference, text)
    text = _LITERAL.sub(r"`\1`", text)
    text = text.replace("\\ ", "")
    lines = []
    for line in text.split("\n"):
        if line.strip() == "::":
            line = ""
        elif line.endswith("::"):
            line = line[:-1]
        lines.append(line)
    return "\n".join(lines)


class ReSTDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
