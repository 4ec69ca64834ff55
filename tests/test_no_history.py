"""The product says what is true now; development history lives in CHANGELOG.md.

Scans README.md, docs/, android_demo/README.md, every ``--help`` text of the CLI and the
package's Python code (comments and docstrings included) for words that only make sense in a
lab notebook: work-session numbers, issue numbers, "target met", commit hashes, temporary
paths and files a clone does not have. benchmarks/ keeps its experiment logs and is not
scanned.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]

HISTORY = [
    r"\bsession \d+",
    r"\bthis session\b",
    r"\bsessions? \d",
    r"\bissue #?\d+",
    r"\bissue \d",
    r"\btargets? (?:was |were )?met\b",
    r"\bnot met\b",
    r":\s*\**met\b",  # "(target 1: **met**)"
    # a commit hash next to the word commit (sha256 examples elsewhere are fine)
    r"\bcommits?\W{0,3}`?\b[0-9a-f]{7,40}\b",
    r"\b[0-9a-f]{7,40}\b`?\W{0,3}commit\b",
    r"clean clone of `?[0-9a-f]{7,40}\b",
    r"(?<![\w.])/tmp/",
    r"BASISNET\.md",
    r"DEPLOYMENT_NOTES",
    r"shared with other jobs",
]
PATTERN = re.compile("|".join(f"(?:{p})" for p in HISTORY), re.IGNORECASE)
# Upstream revisions a file cites as its source are provenance, not our history:
# android_demo/README.md names the google-ai-edge/LiteRT commit its Kotlin stubs follow.
UPSTREAM = {"commit 070f50f59bab"}


def history_words(text: str) -> list[str]:
    """Each line of ``text`` that holds a history word, as 'line N: ...'."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        match = PATTERN.search(line)
        if match and match.group(0) not in UPSTREAM:
            hits.append(f"line {number}: {match.group(0)!r} in {line.strip()[:120]}")
    return hits


def _documents() -> list[Path]:
    paths = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "android_demo" / "README.md"]
    paths += sorted((ROOT / "docs").rglob("*.md")) if (ROOT / "docs").is_dir() else []
    return [p for p in paths if p.name != "CHANGELOG.md"]


def _code() -> list[Path]:
    files = []
    for folder in ("basisnet_deploy", "converters", "calibration"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def _help_texts() -> dict[str, str]:
    from basisnet_deploy.cli import cli

    texts = {}

    def walk(command: click.Command, path: list[str]) -> None:
        ctx = click.Context(command, info_name=" ".join(path))
        texts[" ".join(path)] = command.get_help(ctx)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), path + [name])

    walk(cli, ["basisnet-deploy"])
    return texts


@pytest.mark.parametrize("text, found", [
    ("Until session 6 it did not", "session 6"),
    ("measured this session, after", "this session"),
    ("sessions 10-12, converters", "sessions 1"),
    ("meets issue 10's agreement targets", "issue 10"),
    ("(issue #12)", "issue #12"),
    ("(target 1: **met**)", ": **met"),
    ("target met", "target met"),
    ("targets were met", "targets were met"),
    ("<= 2.0 ms: not met", "not met"),
    ("from a clean clone of commit a953768, each", "commit a953768"),
    ("a clean clone of `2ca0b3d`, exit 0", "clean clone of `2ca0b3d"),
    ("benchmarks/fidelity_photos.py /tmp/fid/ckpt2", "/tmp/"),
    ("The recipe follows BASISNET.md", "BASISNET.md"),
    ("`../shared/DEPLOYMENT_NOTES.md` says", "DEPLOYMENT_NOTES"),
    ("on 2 cores shared with other jobs", "shared with other jobs"),
])
def test_the_patterns_catch_history(text, found):
    hits = history_words(text)
    assert hits and found.lower() in hits[0].lower(), (text, hits)


@pytest.mark.parametrize("text", [
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 of the file",
    "a session is prepared when it is opened",
    "LiteRT sessions share one device",
    "the tissue 3 class",
    "met the float model's outputs",
    "writes to a temporary directory (tempfile.mkdtemp)",
    "os.path.join(tmp, 'x')",
    "mismatch in commit order",
])
def test_the_patterns_spare_ordinary_words(text):
    assert history_words(text) == []


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_hold_no_history(path):
    assert history_words(path.read_text()) == [], f"{path.relative_to(ROOT)}: move history to CHANGELOG.md"


def test_code_holds_no_history():
    hits = [f"{path.relative_to(ROOT)} {hit}" for path in _code() for hit in history_words(path.read_text())]
    assert hits == [], "\n".join(hits)


def test_cli_help_holds_no_history():
    texts = _help_texts()
    assert {"basisnet-deploy", "basisnet-deploy export", "basisnet-deploy train"} <= set(texts)
    hits = [f"{name}: {hit}" for name, text in texts.items() for hit in history_words(text)]
    assert hits == [], "\n".join(hits)


def test_changelog_and_license_are_there():
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## .*\d{4}-\d{2}", changelog, re.M), "CHANGELOG.md has no dated entries"
