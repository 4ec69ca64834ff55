"""The package's folders are stages and imports point one way (docs/design.md "Layout").

Walks every ``import`` in the package (module level and inside functions) with ``ast`` and
fails on an import that the stage table below does not allow: an upward import, a cycle
between folders, or anything importing the CLI.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"basisnet_deploy": ROOT / "basisnet_deploy",
                "basisnet_deploy.converters": ROOT / "converters",
                "basisnet_deploy.calibration": ROOT / "calibration"}

# stage -> the stages it may import (besides itself). Lower stages never import higher ones.
ALLOWED = {
    "root": set(),  # basisnet_deploy/__init__.py: the version only
    "common": {"root"},
    "targets": {"common"},  # targets and recipes as data: the vocabulary every stage shares
    "data": {"common"},
    "model": {"common", "data"},
    "training": {"common", "data", "model"},
    "quantization": {"common", "data", "model", "targets"},
    "artifacts": {"common", "data", "targets"},
    "calibration": {"common", "data", "artifacts", "targets"},
    "converters": {"common", "model", "artifacts", "targets"},
    "runtime": {"common", "data", "artifacts", "targets"},
    "export": {"root", "common", "data", "model", "artifacts", "calibration", "converters",
               "runtime", "targets", "quantization"},
    "report": {"common", "data", "artifacts", "runtime", "targets"},
    "cli": {"root", "common", "data", "model", "training", "artifacts", "calibration",
            "converters", "runtime", "export", "report", "targets", "quantization"},
}


def _modules():
    """(dotted module name, path) for every module of the installed package."""
    for prefix, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([prefix, *parts]), path


def stage_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "basisnet_deploy":
        raise ValueError(module)
    if len(parts) == 1:
        return "root"
    return "cli" if parts[1] == "cli" else parts[1]


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "basisnet_deploy":  # from basisnet_deploy import x: x is a stage
                for alias in node.names:
                    name = alias.name
                    yield node.lineno, "basisnet_deploy" if name == "__version__" else f"basisnet_deploy.{name}"
            else:
                yield node.lineno, node.module


def _violations():
    found = []
    for module, path in _modules():
        here = stage_of(module)
        for line, target in _imports(path):
            if not target.startswith("basisnet_deploy"):
                continue
            there = stage_of(target)
            if there != here and there not in ALLOWED[here]:
                found.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {there} ({target})")
    return found


def test_every_module_belongs_to_a_known_stage():
    unknown = {stage_of(m) for m, _ in _modules()} - set(ALLOWED)
    assert not unknown, f"folders with no row in ALLOWED: {unknown}"


def test_no_import_runs_against_the_stage_order():
    assert _violations() == []


def test_the_stage_table_has_no_cycle():
    seen, done = set(), set()

    def visit(stage, trail):
        assert stage not in seen - done, f"cycle: {' -> '.join(trail + [stage])}"
        if stage in done:
            return
        seen.add(stage)
        for dep in ALLOWED[stage]:
            visit(dep, trail + [stage])
        done.add(stage)

    for stage in ALLOWED:
        visit(stage, [])


def test_the_walk_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The checker itself must catch an upward import, or the test above proves nothing."""
    fake = tmp_path / "basisnet_deploy" / "runtime"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from basisnet_deploy.export.pipeline import export\n")
    monkeypatch.setitem(PACKAGE_DIRS, "basisnet_deploy", tmp_path / "basisnet_deploy")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert any("runtime imports export" in v for v in _violations())
