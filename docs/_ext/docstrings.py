"""Docs-build extension: adapt reStructuredText habits of bionn's docstrings to Markdown.

- A Google-style ``Example:`` heading (singular) is read as the ``Examples:`` section, so its
  ``>>>`` lines render as code; the docstring parser knows only the plural as that section.
- Cross-reference roles (``:class:`~bionn.rate.CTRNN```, ``:func:``, ``:meth:``, ``:math:``, ...)
  render as inline code (``CTRNN``) instead of literal role text.
- A parenthesised remark among the ``Args:`` entries (``(other arguments as ...)``), which is
  not a parameter, becomes a sentence after the section.
- ``#:`` comment lines right above a module or class attribute are that attribute's docstring.

The source is not changed; only the text that the API reference parses.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const|math):`([^`]+)`")
_COMMENT = re.compile(r"^\s*#: ?(.*)$")
_ARGS = re.compile(r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):")


def _role_text(match: re.Match) -> str:
    text = match.group(1)
    titled = re.fullmatch(r"(.+?)\s*<[^>]+>", text)
    if titled:
        text = titled.group(1)
    elif text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"`{text.lstrip('!')}`"


def _remarks_after_args(value: str) -> str:
    out: list[str] = []
    remarks: list[str] = []
    section_indent = item_indent = None

    def flush() -> None:
        if remarks:
            if out and out[-1].strip():
                out.append("")
            out.extend(r[0].upper() + r[1:] + "." for r in remarks)
            remarks.clear()

    for line in value.split("\n"):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if section_indent is not None and stripped and indent <= section_indent:
            flush()
            if out and out[-1].strip():
                out.append("")
            section_indent = None
        if _ARGS.fullmatch(stripped):
            section_indent, item_indent = indent, None
        elif section_indent is not None and stripped:
            item_indent = indent if item_indent is None else item_indent
            if indent == item_indent and stripped.startswith("(") and stripped.endswith(")"):
                remarks.append(stripped[1:-1])
                continue
        out.append(line)
    flush()
    return "\n".join(out)


def _clean(value: str) -> str:
    value = _EXAMPLE.sub(r"\1Examples:", _remarks_after_args(value))
    return _ROLE.sub(_role_text, value)


class DocstringText(griffe.Extension):
    """Rewrite the docstring text described above before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _clean(obj.docstring.value)

    def on_attribute_instance(self, *, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        if attr.docstring is not None or attr.lineno is None or attr.filepath is None:
            return
        lines = agent.lines_collection[attr.filepath] if hasattr(agent, "lines_collection") else []
        comment: list[str] = []
        index = attr.lineno - 2  # the line above the assignment, 0-based
        while 0 <= index < len(lines) and (match := _COMMENT.match(lines[index])):
            comment.insert(0, match.group(1))
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(
                _clean("\n".join(comment)), lineno=index + 2, endlineno=attr.lineno - 1, parent=attr
            )
