"""docs/benchmarks.md is generated from benchmarks/results/*.json, and README's "Performance at a
glance" shows only figures that the generator reads from those files."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_benchmark_pages.py"
NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:,\d{3})*(?:\.\d+)?")


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_benchmark_pages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def glance_table(readme: str) -> list[list[str]]:
    """The rows (cells) of README's "Performance at a glance" table."""
    section = readme.split("## Performance at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    assert rows, "README has no Performance at a glance table"
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def figure_problems(readme: str, gen) -> list[str]:
    """README_FIGURES values missing from the table (its 'what' and 'figure' columns), and
    numbers in the 'figure' column that no README_FIGURES value accounts for."""
    rows = glance_table(readme)
    values = {key: gen.FIGURES[key].value() for key in gen.README_FIGURES}
    shown = "\n".join(" | ".join(row[:2]) for row in rows)
    problems = [f"{key}={v} not shown" for key, v in values.items() if v not in shown]
    allowed = {n for v in values.values() for n in NUMBER.findall(v)}
    problems += [f"{n} in {row[1]!r} is traced to no JSON" for row in rows
                 for n in NUMBER.findall(row[1]) if n not in allowed]
    return problems


def test_the_benchmark_page_is_what_the_json_files_say():
    """A re-run benchmark that changed a JSON, or a hand edit of the page, fails here until the
    page is regenerated (python scripts/gen_benchmark_pages.py)."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_readme_shows_exactly_the_generated_figures(gen):
    """Every README_FIGURES value appears, as the generator writes it, in the table; and every
    number in the table's figure column is one of them (a typed figure fails)."""
    assert figure_problems((ROOT / "README.md").read_text(), gen) == []


def test_a_typed_or_stale_readme_figure_fails(gen):
    readme = (ROOT / "README.md").read_text()
    assert "LM 1.44 ms" in readme
    assert figure_problems(readme.replace("LM 1.44 ms", "LM 1.40 ms"), gen) == [
        "lat_lm=1.44 ms not shown",
        "1.40 in 'LM 1.40 ms; template 9.65 ms (1.02x float); coefficient-input 23.48 ms' is traced to no JSON"]


def test_a_changed_json_makes_the_page_stale(gen, tmp_path, monkeypatch):
    """The check compares figures, not only files: one changed value changes the page."""
    before = gen.render()
    results = tmp_path / "results"
    subprocess.run(["cp", "-r", str(gen.RESULTS), str(results)], check=True)
    data = json.loads((results / "recipe_latency_full.json").read_text())
    data["median_ms"]["lightweight"]["int8 fidelity"] = 2.5
    (results / "recipe_latency_full.json").write_text(json.dumps(data))
    monkeypatch.setattr(gen, "RESULTS", results)
    after = gen.render()
    assert after != before and "| LM, fidelity | 2.50 ms |" in after


def test_a_missing_json_is_a_clear_error(gen, tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "RESULTS", tmp_path)
    with pytest.raises(gen.MissingResult, match=r"benchmarks/results/fidelity_photos/tflite5_weight_only\.json: no such file"):
        gen.render()
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(gen.MissingResult, match=r"x\.json: no key 'a/b'|x\.json: no key 'a'"):
        gen.get("x.json", "a", "b")


def test_each_section_shows_where_its_figures_were_measured(gen):
    page = gen.render()
    for section in gen.SECTIONS:
        block = page.split(f"## {section.title}\n", 1)[1].split("\n## ", 1)[0]
        assert f"benchmarks/results/{section.source}" in block
        assert "- machine:" in block and "- date:" in block and "- command:" in block
