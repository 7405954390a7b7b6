"""The runtime stands apart from the tools: no module of gateway/, embeddings/ or policies/
imports `tools`, except that the `cachegate` command dispatches to it inside subcommands."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = ("gateway", "embeddings", "policies")
CLI = REPO / "gateway" / "cli.py"


def imports_of_tools(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "tools" or name.startswith("tools.") for name in names):
            found.append(node)
    return found


def runtime_modules() -> list[Path]:
    modules = [path for package in RUNTIME for path in sorted((REPO / package).rglob("*.py"))]
    assert len(modules) > 20  # the walk found the runtime
    return modules


def test_the_runtime_imports_no_tool_module():
    offenders = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in runtime_modules()
        if path != CLI
        for node in imports_of_tools(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == []


def test_the_cli_imports_tools_only_inside_the_subcommands_that_run_them():
    tree = ast.parse(CLI.read_text(), str(CLI))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    outside = [n for n in tree.body if n not in functions]
    assert [node.lineno for node in outside for node in imports_of_tools(node)] == []
    assert any(imports_of_tools(f) for f in functions)  # it does dispatch to the tools


def test_the_check_sees_every_form_of_import():
    for source in ("import tools", "import tools.demo as d", "from tools.demo import run_demo"):
        assert imports_of_tools(ast.parse(source))
    for source in ("import toolsmith", "from .tools import x", "from gateway import tools_x"):
        assert not imports_of_tools(ast.parse(source))
