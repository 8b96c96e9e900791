"""No calibration node imports another node.

A node (a module in ``calibrations/`` that defines ``NAME``) is one step of the
graph; what several nodes need lives in modules that are not nodes: procedures
that drive the lab (``calibrations/fridge.py``), helpers (``_common.py``,
``cell_states.py``, ``virtual_bias.py``), or pure numerics in ``labstack.fit``.
A node that imported another would couple two graph steps behind the engine's
back (the dependency would not be in ``DEPENDS_ON``, and editing one node could
change another's results), and so would a helper that imported a node, so
imports through helpers count too. Import-linter cannot say "modules that define
NAME", so the rule is checked here on the source with ``ast`` (every import
statement, including ones inside functions, absolute or relative).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
CALIBRATIONS = ROOT / "calibrations"
#: the folder installs as labstack.calibrations; in the source tree it is also calibrations
PACKAGES = ("labstack.calibrations", "calibrations")


def is_node(tree: ast.Module) -> bool:
    """A node defines ``NAME`` at module level."""
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "NAME" for t in targets):
            return True
    return False


def sibling_imports(tree: ast.Module) -> set[str]:
    """Names of the ``calibrations`` modules a module imports (may include non-modules,
    e.g. ``from labstack.calibrations import x`` for a name ``x`` in ``__init__``)."""
    found: set[str] = set()

    def add_dotted(name: str) -> None:
        for package in PACKAGES:
            if name.startswith(package + "."):
                found.add(name[len(package) + 1 :].split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add_dotted(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if (node.level == 0 and node.module in PACKAGES) or (node.level == 1 and node.module is None):
                found.update(alias.name for alias in node.names)
            elif node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 0 and node.module:
                add_dotted(node.module)
    return found


def node_imports(folder: Path) -> list[str]:
    """``"b.py imports node a"`` for every node of ``folder`` that imports another node,
    directly or through modules that are not nodes (``"... (via helpers)"``), since a
    helper that imported a node would be a back door for every node that uses it."""
    trees = {path.stem: ast.parse(path.read_text(), filename=str(path)) for path in sorted(folder.glob("*.py"))}
    imports = {name: sibling_imports(tree) & trees.keys() for name, tree in trees.items()}
    nodes = {name for name, tree in trees.items() if is_node(tree)}
    found = []
    for name in sorted(nodes):
        seen: dict[str, list[str]] = {}  # module reached -> the helpers it was reached through
        todo = [(other, []) for other in sorted(imports[name])]
        while todo:
            module, via = todo.pop(0)
            if module in seen or module == name:
                continue
            seen[module] = via
            if module not in nodes:
                todo.extend((other, [*via, module]) for other in sorted(imports[module]))
        for module, via in sorted(seen.items()):
            if module in nodes:
                found.append(f"{name}.py imports node {module}" + (f" (via {', '.join(via)})" if via else ""))
    return found


def test_no_node_imports_another_node():
    assert node_imports(CALIBRATIONS) == []


def test_nodes_and_procedures_are_told_apart():
    trees = {path.stem: ast.parse(path.read_text()) for path in CALIBRATIONS.glob("*.py")}
    nodes = {name for name, tree in trees.items() if is_node(tree)}
    assert {"cryostat", "bias_scurve", "effective_temperature", "thermalization"} <= nodes
    assert not nodes & {"fridge", "_common", "cell_states", "virtual_bias", "__init__"}


def test_the_rule_sees_every_form_of_import(tmp_path: Path):
    (tmp_path / "a.py").write_text('NAME = "a"\n')
    (tmp_path / "b.py").write_text('NAME: str = "b"\n\ndef f():\n    from labstack.calibrations import a\n')
    (tmp_path / "c.py").write_text('NAME = "c"\nimport labstack.calibrations.a.x\n')
    (tmp_path / "d.py").write_text('NAME = "d"\nfrom .a import thing\n')
    (tmp_path / "e.py").write_text('NAME = "e"\nfrom calibrations.a import thing\n')
    (tmp_path / "f.py").write_text('NAME = "f"\nfrom . import a\n')
    # fine: a node importing procedures, and a same-named module of another package
    (tmp_path / "procedures.py").write_text("from labstack.fit import a\n")
    (tmp_path / "g.py").write_text('NAME = "g"\nfrom labstack.calibrations.procedures import y\nfrom labstack.fit import a\n')
    assert node_imports(tmp_path) == [f"{n}.py imports node a" for n in "bcdef"]


def test_the_rule_sees_a_node_imported_through_a_helper(tmp_path: Path):
    (tmp_path / "a.py").write_text('NAME = "a"\n')
    (tmp_path / "helper.py").write_text("from labstack.calibrations.a import thing\n")
    (tmp_path / "other.py").write_text("from labstack.calibrations import helper\n")
    (tmp_path / "b.py").write_text('NAME = "b"\nfrom labstack.calibrations.other import x\n')
    assert node_imports(tmp_path) == ["b.py imports node a (via other, helper)"]
