"""The fit loop stays readable (issue: training reads top to bottom): ``fit`` at most 40 lines
and 5 levels deep, and no function of the loop's module takes more than 7 parameters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LOOP = Path(__file__).resolve().parents[1] / "imtrans" / "training" / "loop.py"
#: What opens a level of nesting inside a function.
NESTING = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.ExceptHandler,
           ast.Match)


def functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(LOOP.read_text(encoding="utf-8"))
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def depth(node: ast.AST) -> int:
    """The deepest nesting of blocks inside ``node``."""
    return max((depth(child) + isinstance(child, NESTING)
                for child in ast.iter_child_nodes(node)), default=0)


def parameters(function: ast.FunctionDef) -> int:
    args = function.args
    return (len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            + (args.vararg is not None) + (args.kwarg is not None))


def test_fit_is_short_and_shallow() -> None:
    fit = functions()["fit"]
    assert fit.end_lineno is not None
    assert fit.end_lineno - fit.lineno + 1 <= 40
    assert depth(fit) <= 5


@pytest.mark.parametrize("name", sorted(functions()))
def test_no_function_of_the_loop_takes_more_than_seven_parameters(name: str) -> None:
    assert parameters(functions()[name]) <= 7


def test_the_measures_see_nesting_and_parameters() -> None:
    """The checks above could pass by measuring nothing: they measure a made-up function."""
    code = ("def f(a, b, *c, d, **e):\n"
            "    for x in a:\n"
            "        if x:\n"
            "            with b:\n"
            "                pass\n")
    function = ast.parse(code).body[0]
    assert isinstance(function, ast.FunctionDef)
    assert depth(function) == 3 and parameters(function) == 5
