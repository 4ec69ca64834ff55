"""The one way the docs generators write a page or, with ``--check``, test that it is current."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(page: Path, text: str, argv: list[str], script: str) -> int:
    """Write ``text`` to ``page``; with ``--check`` in ``argv`` only compare (exit status 1 and a
    line naming ``script`` when the committed page differs)."""
    if "--check" in argv:
        if not page.is_file() or page.read_text() != text:
            print(f"{page} is stale: run python {script}", file=sys.stderr)
            return 1
        return 0
    page.write_text(text)
    return 0
