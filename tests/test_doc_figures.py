"""Every measured figure in docs/ names its source: a paragraph, list item or table row that
states one (a number with a unit of measurement, an agreement, an error) links a file under
benchmarks/results/ (a JSON file, or an experiment log there) or a section of the generated
docs/benchmarks.md, and the link resolves.

A table row or list item may take its link from the paragraph that introduces its table or
list (directly above it). Bounds and settings are not measurements: a number after ``<=``/``>=`` (a threshold),
and the phrases in ``NOT_MEASURED`` (a confidence level, a split of a data set, ...), are
skipped. docs/benchmarks.md and docs/cli-reference.md are generated and not checked here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
GENERATED = {"benchmarks.md", "cli-reference.md"}
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name not in GENERATED)

_NUM = r"(?<![\w.-])-?\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?"
_UNIT = (r"(?:%|x(?![\w\d])|×(?!\d)"
         r"|\s?(?:ms|MB|GB|KB|kB|fps|images/s|frames/s|steps/s|s|min|minutes|seconds|pt|points?)\b)")
# a number with a unit of measurement, or an error value after its name
FIGURE = re.compile(
    rf"{_NUM}\s?{_UNIT}"
    r"|\b(?:max_rel|max_abs|mean_abs|max abs error|error|errors)\s(?:of\s|from\s)?(?:0|\d+e-)[\d.]*"
)
# settings, definitions and thresholds that look like measurements
NOT_MEASURED = re.compile(
    r"(?:<=|>=|≤|≥|<|>|at least|at most|up to|within|below|above|default|--[\w-]+)\s*"
    rf"{_NUM}\s?{_UNIT}"
    r"|\b95% (?:Wilson|interval|confidence)"
    # the gate's arithmetic: how many images tell one agreement level from another
    rf"|{_NUM}% from {_NUM}%|\b[\d,]+ at {_NUM}%"
    r"|\b\d+% of (?:the |its )?\d[\d,]* (?:training|held-out)"
    r"|\b0\.005 step|\b0\.01 step"
    # schedules and settings stated as fractions or multiples
    r"|\b\d+(?:\.\d+)?% (?:hold|decay)\b|\b4x for augmented|\b\d+% of the area|\b2% keeps every mix"
    r"|\b\d+% held out\b|\bthe \d+% gap\b"
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (as tests/test_docs.py computes them)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in HEADING.findall(text)}


def blocks(text: str) -> list[tuple[str, str]]:
    """The page's paragraphs, list items and table rows as (text, caption); the caption of a
    table row or list item is the paragraph directly above its table or list, else ''. Code
    blocks and headings are left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    found: list[tuple[str, str]] = []
    para: list[str] = []
    is_item = False      # para is a list item
    last_para = ""       # the last paragraph that was not a list item
    in_table = False
    caption = ""

    def flush():
        nonlocal para, last_para
        if para:
            joined = " ".join(para)
            found.append((joined, caption if is_item else ""))
            if not is_item:
                last_para = joined
            para = []

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if not in_table:
                flush()
                caption, in_table = last_para, True
            found.append((stripped, caption))
            continue
        if in_table:
            in_table, last_para = False, ""
        if not stripped or stripped.startswith("#"):
            flush()
            if stripped:
                last_para, is_item = "", False
        elif re.match(r"([-*+]|\d+\.) ", stripped):
            flush()
            if not is_item:
                caption = last_para
            para, is_item = [stripped], True
        elif para:
            para.append(stripped)
        else:
            # a new block: a paragraph indented under a list item still belongs to the list
            is_item = is_item and line.startswith((" ", "\t"))
            para = [stripped]
    flush()
    return found


def figures(block: str) -> list[str]:
    """The measured figures a block states (inline code, link targets and bounds dropped)."""
    text = re.sub(r"`[^`\n]*`", "", block)
    text = re.sub(r"\]\([^)\s]*\)", "]", text)
    text = NOT_MEASURED.sub("", text)
    return [m.group(0) for m in FIGURE.finditer(text)]


def source_links(block: str, page: Path) -> tuple[list[str], list[str]]:
    """(links to a results file or docs/benchmarks.md that resolve, those that do not)."""
    good, bad = [], []
    for target in LINK.findall(block):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page.resolve()
        is_source = (linked.is_relative_to(RESULTS.resolve())
                     or linked == (DOCS / "benchmarks.md").resolve())
        if not is_source:
            continue
        if not linked.is_file():
            bad.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            bad.append(f"{target}: no such section in {linked.name}")
        else:
            good.append(target)
    return good, bad


def untraced(page: Path) -> list[str]:
    """Each block of the page that states a measured figure with no source link, and each
    source link that does not resolve."""
    problems = []
    for block, caption in blocks(page.read_text()):
        good, bad = source_links(block, page)
        problems += [f"{page.name}: {b}" for b in bad]
        found = figures(block)
        if found and not good and not source_links(caption, page)[0]:
            problems.append(f"{page.name}: {', '.join(found)} with no source: {block[:100]}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_measured_figure_links_its_source(page):
    assert untraced(page) == []


def test_the_checker_finds_an_untraced_figure(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    docs.mkdir()
    (results / "speed.json").write_text("{}")
    (docs / "benchmarks.md").write_text("# Benchmarks\n\n## Speed\n")
    monkeypatch.setattr(sys.modules[__name__], "RESULTS", results)
    monkeypatch.setattr(sys.modules[__name__], "DOCS", docs)
    page = docs / "page.md"
    page.write_text(
        "# Page\n\n"
        "The LM runs in 1.44 ms ([speed](../benchmarks/results/speed.json)).\n\n"
        "The template runs at 0.95x float speed.\n\n"
        "- agreement 99.58%, see [Speed](benchmarks.md#speed)\n"
        "- agreement 98.75%, see [gone](../benchmarks/results/gone.json)\n"
        "- agreement 97.0%, see [gone](benchmarks.md#nowhere)\n\n"
        "Measured ([speed](../benchmarks/results/speed.json)):\n\n"
        "| artifact | ms |\n| --- | --- |\n| LM | 1.37 ms |\n\n"
        "| artifact | ms |\n| --- | --- |\n| template | 9.79 ms |\n\n"
        "Measured ([speed](../benchmarks/results/speed.json)):\n"
        "- LM 1.44 ms\n- template 9.65 ms\n\n"
        "A list without a source:\n\n- specialist 23.48 ms\n\n"
        "Settings are not figures: 224 px, opset 17, >= 99.5% and a 95% Wilson interval.\n"
    )
    assert untraced(page) == [
        "page.md: 0.95x with no source: The template runs at 0.95x float speed.",
        "page.md: ../benchmarks/results/gone.json: no such file",
        "page.md: 98.75% with no source: - agreement 98.75%, see [gone](../benchmarks/results/gone.json)",
        "page.md: benchmarks.md#nowhere: no such section in benchmarks.md",
        "page.md: 97.0% with no source: - agreement 97.0%, see [gone](benchmarks.md#nowhere)",
        "page.md: 9.79 ms with no source: | template | 9.79 ms |",
        "page.md: 23.48 ms with no source: - specialist 23.48 ms",
    ]
