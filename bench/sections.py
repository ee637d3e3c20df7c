"""BENCHMARKS.md holds one section per benchmark script; each script rewrites only its own."""

from __future__ import annotations

import re
from pathlib import Path

TITLE = "# Benchmarks\n"


def replace_section(path: Path, name: str, text: str) -> None:
    """Put ``text`` between this section's markers, keeping the other sections."""
    begin, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    current = path.read_text(encoding="utf-8") if path.exists() else TITLE
    if begin not in current:
        if not current.startswith(TITLE):
            current = TITLE
        path.write_text(current.rstrip("\n") + "\n\n" + block, encoding="utf-8")
        return
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end) + "\n?", re.S)
    path.write_text(pattern.sub(lambda _: block, current), encoding="utf-8")
