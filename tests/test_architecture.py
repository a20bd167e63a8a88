"""The architecture contract of docs/architecture.md, checked on the source tree.

* the import-linter contracts in ``pyproject.toml`` (``[tool.importlinter]``): the pipeline layers
  (a lower stage never imports a higher one, function-level imports included) and no import cycle
  between the modules of any package;
* no private name (leading underscore) is imported from another module, in ``svseg/`` and ``tests/``;
* no test calls a private function or method of svseg;
* ``svseg`` modules import each other at module top, where the contract can see them;
* no file in ``svseg/`` exceeds 600 lines, a network module (one paper) 750.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SVSEG = ROOT / "svseg"
TESTS = ROOT / "tests"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("planted", [
    ("svseg/io/atomic.py", "import svseg.bundle  # planted: the lowest layer imports a higher one\n", "Pipeline layers"),
    ("svseg/evaluation/labels.py", "from svseg.evaluation import evaluator  # planted cycle\n", "No import cycles"),
])
def test_import_contracts_catch_a_planted_violation(tmp_path, planted):
    """A copy of the package with one violating import breaks the contract it plants against."""
    rel, line, contract = planted
    copy = tmp_path / "tree"
    copy.mkdir()
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    subprocess.run(["cp", "-r", str(SVSEG), str(copy / "svseg")], check=True)
    target = copy / rel
    if not target.is_file():
        pytest.fail(f"{rel} no longer exists; plant the violation in another module of that layer")
    target.write_text(target.read_text() + "\n" + line)
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout


def _private_imports(source: str, label: str) -> list[str]:
    """``from svseg.x import _name``, ``from svseg._x import ...`` and ``import svseg._x`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("svseg", "tests"):
            private_module = any(part.startswith("_") and not part.startswith("__")
                                 for part in node.module.split("."))
            names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private_module or names:
                found.append(f"{label}:{node.lineno}: from {node.module} import "
                             f"{', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "svseg" and any(p.startswith("_") and not p.startswith("__")
                                                           for p in a.name.split(".")):
                    found.append(f"{label}:{node.lineno}: import {a.name}")
    return found


def test_no_private_name_is_imported_across_modules():
    found = [f for p in _python_files(SVSEG) + _python_files(TESTS)
             for f in _private_imports(p.read_text(), str(p.relative_to(ROOT)))]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_private_import_check_finds_planted_imports():
    source = "from svseg.evaluation.evaluator import _helper\nimport svseg.data._io\nfrom svseg.io import case_name\n"
    assert _private_imports(source, "planted.py") == [
        "planted.py:1: from svseg.evaluation.evaluator import _helper",
        "planted.py:2: import svseg.data._io",
    ]


def _private_calls(source: str) -> list[tuple[int, str]]:
    """``obj._name(...)`` calls and ``obj._name`` reads on anything but ``self``/``cls``/``super()``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue
            out.append((node.lineno, node.attr))
    return out


def test_no_test_uses_a_private_name_of_svseg():
    # other libraries' underscore names that have no public spelling (torch modules, argparse actions)
    allowed_libs = {"_modules", "_parameters", "_buffers", "_actions", "_SubParsersAction", "_HelpAction"}
    found = []
    for path in _python_files(TESTS):
        for lineno, attr in _private_calls(path.read_text()):
            if attr not in allowed_libs:
                found.append(f"{path.relative_to(ROOT)}:{lineno}: ._{attr.lstrip('_')}")
    assert not found, "tests reach into private names:\n" + "\n".join(found)


def test_private_call_check_finds_a_planted_call():
    source = textwrap.dedent("""
        def test_x(saver, engine):
            saver._started(engine)
            self._ok()
    """)
    assert _private_calls(source) == [(3, "_started")]


def _function_level_svseg_imports(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if (module or "").startswith("svseg") or any(n.startswith("svseg") for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


# the CLI imports each command's stage when that command runs, so `svseg --help` answers at once
# (the layer contract above still sees those imports)
LAZY_IMPORTS_ALLOWED = {SVSEG / "cli.py"}


def test_svseg_modules_import_each_other_at_module_top():
    found = [f for p in _python_files(SVSEG) if p not in LAZY_IMPORTS_ALLOWED for f in _function_level_svseg_imports(p)]
    assert not found, "function-level svseg imports (hidden from the layer contract's reader):\n" + "\n".join(found)


def test_file_sizes():
    too_long = []
    for path in _python_files(SVSEG):
        limit = 750 if path.parent.name == "networks" else 600
        n = len(path.read_text().splitlines())
        if n > limit:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines > {limit}")
    assert not too_long, "\n".join(too_long)
