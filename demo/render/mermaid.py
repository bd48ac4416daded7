"""A task's sequence as Mermaid `sequenceDiagram` text, safe to paste into Markdown."""

from __future__ import annotations

import re

from demo.trace.sequence import Sequence, one_line

_MERMAID_ESCAPES = {"#": "#35;", ";": "#59;", "<": "#lt;", ">": "#gt;", '"': "#quot;"}
_MERMAID_ESCAPES |= {"'": "#39;", "%": "#37;"}  # %% starts a Mermaid comment anywhere on a line
# Mermaid's lexer takes the first rule that matches, so an id starting with a keyword breaks it.
_MERMAID_KEYWORD = re.compile(
    r"activate|actor|alt|and|autonumber|box|break|create|critical|deactivate|destroy|details"
    r"|else|end|left|link|loop|note|off|opt|over|par|participant|properties|rect|right|title",
    re.IGNORECASE,
)


def mermaid_text(text: str) -> str:
    """Escape `text` with Mermaid entity codes so it cannot end or comment out a statement."""
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in one_line(text, 200))


def mermaid_id(key: str) -> str:
    """A Mermaid participant id for `key`: letters, digits and underscores, never a keyword."""
    ident = re.sub(r"\W", "_", key, flags=re.ASCII)
    unsafe = _MERMAID_KEYWORD.match(ident) is not None or ident[:1].isdigit()
    return f"p_{ident}" if unsafe else ident


def to_mermaid(seq: Sequence) -> str:
    """Render `seq` as Mermaid `sequenceDiagram` text (one statement a line, newline-terminated)."""
    ids = {p.key: mermaid_id(p.key) for p in seq.participants}
    lines = ["sequenceDiagram"]
    lines += [f"    participant {ids[p.key]} as {mermaid_text(p.label)}" for p in seq.participants]
    for a in seq.arrows:
        if a.is_note:
            lines.append(f"    Note over {ids[a.src]}: {mermaid_text(a.label)}")
        else:
            lines.append(f"    {ids[a.src]}->>{ids[a.dst]}: {mermaid_text(a.label)}")
    return "\n".join(lines) + "\n"
