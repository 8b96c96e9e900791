"""Run import-linter on labstack laid out as it installs: the import contracts check.

The contracts are in pyproject.toml (``[tool.importlinter]``). import-linter builds its
import graph (through grimp) by walking the folder of the root package, ``labstack/``.
Here ``drivers/``, ``calibrations/`` and ``station_configs/`` sit beside that folder and
only become ``labstack.drivers``, ``labstack.calibrations`` and
``labstack.station_configs`` when installed (``[tool.setuptools.package-dir]``), so a
plain ``lint-imports`` never sees them: an import written in ``calibrations/`` goes
unchecked, and an import of ``labstack.calibrations`` from the core is dropped from the
graph. (Naming them as extra root packages does not help: grimp takes only top-level
packages or portions of a namespace package as roots, and ``labstack`` is a regular
package.)

So this module copies the ``.py`` files of ``labstack/`` and of every folder mapped in
``[tool.setuptools.package-dir]`` into a temporary tree shaped like the installed
package (``<tmp>/labstack/``, ``<tmp>/labstack/calibrations/``, ...) and runs
``lint-imports`` on pyproject.toml from that tree, with the tree as working directory
and first on ``PYTHONPATH``, caching off. Copying takes milliseconds; links would not
do, because grimp's walk of the folder does not follow them.

By hand, from the repository root (output and exit code are lint-imports')::

    python tests/import_contracts.py                  # add lint-imports options if you like, e.g. --verbose

The test suite runs it, and proves each contract with a planted violation, in
tests/test_import_contracts.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def package_folders(pyproject: Path = PYPROJECT) -> dict[str, Path]:
    """Package name -> folder in the repository: ``labstack`` plus ``[tool.setuptools.package-dir]``."""
    mapped = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    folders = {"labstack": pyproject.parent / "labstack"}
    folders.update({name: pyproject.parent / folder for name, folder in mapped.items()})
    return folders


def assemble(dest: Path, pyproject: Path = PYPROJECT) -> Path:
    """Copy the repository's .py files into ``dest`` laid out as installed; return ``dest``."""
    for name, folder in package_folders(pyproject).items():
        target = dest.joinpath(*name.split("."))
        for source in folder.rglob("*.py"):
            out = target / source.relative_to(folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out)
    return dest


def contracts(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Contract id -> contract name, as declared in pyproject.toml."""
    declared = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    return {c["id"]: c["name"] for c in declared}


def lint(
    tree: Path, *args: str, pyproject: Path = PYPROJECT, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the contracts in ``pyproject`` against the assembled ``tree``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    if capture:  # one contract per line, no colour codes: the tests read the output
        env.update(COLUMNS="250", NO_COLOR="1")
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        "--no-cache",
        "--no-logo",
        *args,
        str(pyproject),
    ]
    # cwd=tree: ``python -c`` puts the working directory first on sys.path, and the
    # repository root would give grimp its own labstack/ (without calibrations/ inside).
    return subprocess.run(
        command, cwd=tree, env=env, text=True, capture_output=capture, check=False
    )


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="labstack-imports-") as tmp:
        return lint(assemble(Path(tmp)), *argv, capture=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
