"""The project's size limits: no function or method over 60 lines, no module over 400 lines.

A function's length counts from its first decorator to its last line, docstring included. Run this file as a
script (``python tests/test_code_size.py``) to list every function and module over a limit.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("icu_tasks", "icu_unlearn", "benchmarks")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _label(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def long_functions(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """``("path:line name", lines)`` for every function or method in ``paths`` longer than ``limit`` lines."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > limit:
                    found.append((f"{_label(path)}:{node.lineno} {node.name}", lines))
    return found


def long_modules(limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    """``(path, lines)`` for every module longer than ``limit`` lines."""
    counts = [(str(p.relative_to(ROOT)), len(p.read_text(encoding="utf-8").splitlines())) for p in _modules()]
    return [(name, n) for name, n in counts if n > limit]


def test_the_scan_sees_the_packages() -> None:
    names = {str(p.relative_to(ROOT)) for p in _modules()}
    assert {
        "icu_tasks/records/layout.py",
        "icu_unlearn/training/unlearn.py",
        "benchmarks/run_all.py",
    } <= names


def test_the_scan_counts_decorators_and_docstrings(tmp_path: Path) -> None:
    def method(name: str, body_lines: int) -> str:
        body = "".join(f"        x{i} = {i}\n" for i in range(body_lines))
        return f'    @staticmethod\n    def {name}():\n        """Doc."""\n{body}'

    path = tmp_path / "m.py"  # decorator + def + docstring + 58 = 61 lines; with 57: 60 (at the limit)
    path.write_text("class C:\n" + method("long", 58) + method("fits", 57), encoding="utf-8")
    assert long_functions([path]) == [("m.py:3 long", 61)]


def test_no_function_over_the_limit() -> None:
    assert long_functions(_modules()) == []


def test_no_module_over_the_limit() -> None:
    assert long_modules() == []


if __name__ == "__main__":
    rows = long_functions(_modules()) + long_modules()
    for name, lines in rows:
        print(f"{lines:5d}  {name}")
    sys.exit(1 if rows else 0)
