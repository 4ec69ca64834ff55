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
    "quantization": {"common", "data", "model", "targets", "training"},
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


# Module pairs (a, b) allowed to import each other: none.
KNOWN_CYCLES: set[frozenset] = set()


def _module_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at module level or inside a function.

    ``from pkg import name`` is an edge to ``pkg.name`` where that is a module, else to ``pkg``.
    """
    paths = dict(_modules())
    graph = {}
    for module, path in paths.items():
        edges = graph.setdefault(module, set())
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:  # relative: resolved against this module's package
                    package = module.split(".")
                    if path.name != "__init__.py":
                        package = package[:-1]
                    base = ".".join(package[:len(package) - node.level + 1]
                                    + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                         for a in node.names]
            else:
                continue
            edges.update(n for n in names if n in paths and n != module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules():
    """Also inside one folder, and through imports made inside functions."""
    cycles = [c for c in _cycles(_module_graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_planted_function_local_cycle(tmp_path, monkeypatch):
    fake = tmp_path / "basisnet_deploy" / "report"
    fake.mkdir(parents=True)
    (fake / "a.py").write_text("from basisnet_deploy.report import b\n")
    (fake / "b.py").write_text("def f():\n    from basisnet_deploy.report.a import g\n")
    (fake / "c.py").write_text("from . import a\n")
    for prefix in PACKAGE_DIRS:
        monkeypatch.setitem(PACKAGE_DIRS, prefix, tmp_path / prefix.replace(".", "/"))
    assert _cycles(_module_graph()) == [["basisnet_deploy.report.a", "basisnet_deploy.report.b"]]
    (fake / "a.py").write_text("from .b import x\n")  # relative imports, three modules
    (fake / "b.py").write_text("from .c import y\n")
    assert _cycles(_module_graph()) == [["basisnet_deploy.report.a", "basisnet_deploy.report.b",
                                         "basisnet_deploy.report.c"]]


def _module_state_writes(path: Path) -> list[str]:
    """Where a function rebinds (``global``) or mutates (``NAME[k] = ...``, ``NAME.x = ...``,
    ``NAME.update(...)`` and the like) a name bound at module level: a process-wide switch."""
    tree = ast.parse(path.read_text(), str(path))
    module_names = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)}
    mutators = {"update", "setdefault", "pop", "popitem", "clear", "append", "extend", "insert",
                "remove", "add", "discard"}
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
        local |= {node.id for node in ast.walk(fn) if isinstance(node, ast.Name)
                  and isinstance(node.ctx, ast.Store)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Global):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: global {', '.join(node.names)}")
                continue
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                targets = [t.value for t in targets if isinstance(t, (ast.Subscript, ast.Attribute))]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in mutators):
                targets = [node.func.value]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in module_names and t.id not in local:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: writes module-level {t.id}")
    return found


# (file, name) -> why it is module state. TensorFlow's optimizer options are process-wide; this
# is the reference count of the trainings that turned them off, not a setting of this package.
MODULE_STATE = {("basisnet_deploy/training/trainer.py", "_GRAPHS"):
                "reference count around TensorFlow's process-wide optimizer options",
                ("basisnet_deploy/targets/registry.py", "_REGISTRY"):
                "the export targets: register() adds one, the extension point; no switch"}


def test_no_module_level_mutable_switch():
    """No function rebinds or mutates module state: a setting is an argument, not a global."""
    found = [w for _, path in _modules() for w in _module_state_writes(path)
             if (w.split(":")[0], w.split()[-1]) not in MODULE_STATE]
    assert found == []


def test_the_switch_check_sees_a_planted_global_and_a_toggled_dict(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    bad = tmp_path / "bad.py"
    bad.write_text("_MODE = {'on': False}\n_K = None\n\n"
                   "def toggle(on):\n    _MODE['on'] = on\n\n"
                   "def load():\n    global _K\n    _K = 1\n\n"
                   "def fine(d):\n    d['on'] = 1\n    _local = {}\n    _local['x'] = 2\n")
    assert _module_state_writes(bad) == ["bad.py:5: writes module-level _MODE", "bad.py:8: global _K"]


# (module, private name) reached from another module, each with its reason.
KNOWN_REACH_INS = {("basisnet_deploy.artifacts", "_fastsynth")}  # the compiled kernel fast_synthesis wraps


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _reach_ins(module: str, path: Path, modules: set[str]) -> list[tuple[str, str, int]]:
    """(module, private name, line) this module takes from another module of the package."""
    tree = ast.parse(path.read_text(), str(path))
    aliases, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("basisnet_deploy"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in modules:
                    aliases[a.asname or a.name] = full
                elif _private(a.name) and node.module != module:
                    found.append((node.module, a.name, node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in modules and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in aliases
                and aliases[node.value.id] != module):
            found.append((aliases[node.value.id], node.attr, node.lineno))
    return found


def test_no_module_uses_another_modules_private_names():
    modules = {m for m, _ in _modules()}
    found = [f"{path.relative_to(ROOT)}:{line}: {target}.{name}"
             for module, path in _modules() for target, name, line in _reach_ins(module, path, modules)
             if (target, name) not in KNOWN_REACH_INS]
    assert found == []


def test_the_reach_in_check_sees_both_forms(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from basisnet_deploy.runtime import runner\n"
                   "from basisnet_deploy.runtime.runner import _Pipeline, TwoStageRunner\n"
                   "def f(r):\n    return runner._finish, r._finish, runner.stage_outputs\n")
    modules = {"basisnet_deploy.runtime.runner"}
    assert sorted(_reach_ins("basisnet_deploy.report.page", bad, modules)) == [
        ("basisnet_deploy.runtime.runner", "_Pipeline", 2),
        ("basisnet_deploy.runtime.runner", "_finish", 4)]
