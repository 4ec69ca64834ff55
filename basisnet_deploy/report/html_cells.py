"""The report page's cells: every number (with its JSON pointer), tables and embedded pictures.

Shared by :mod:`basisnet_deploy.report.html` and :mod:`basisnet_deploy.report.html_tables`.
"""

from __future__ import annotations

import base64
from html import escape

FORMATS = {
    "pct": lambda v: f"{v * 100:.1f}%",
    "m": lambda v: f"{v / 1e6:.2f}M",
    "ms": lambda v: f"{v:.3f}",
    "f4": lambda v: f"{v:.4f}",
    "e": lambda v: f"{v:.2e}",
    "int": lambda v: f"{int(v):,}",
    "s": lambda v: f"{v:.1f}",
}


def num(key: str, value, fmt: str) -> str:
    """A number from the JSON at pointer ``key`` ('/'-separated), formatted; '-' when absent."""
    if value is None:
        return f'<span data-key="{escape(key)}" data-fmt="none">-</span>'
    return f'<span data-key="{escape(key)}" data-fmt="{fmt}">{FORMATS[fmt](value)}</span>'


def table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f'<th class="{"t" if i == 0 else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"t" if i == 0 else ""}">{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def img(pictures: dict, name: str, alt: str) -> str:
    data = base64.b64encode(pictures[name]).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" data-file="{name}">'
