"""The library speaks to Python users: its messages name parameters, never command-line flags, and it
reports through `logging` and `warnings`, never `print` or a `log` callable (issue 21).

Only the click layer (`cli.py` modules and `orthovec/core/options.py`) may spell `--flag`: the CLI
renders a library error's `param` as the command's own option.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The folders that install as the `orthovec` package (pyproject's package-dir).
PACKAGE_DIRS = ("orthovec", "indexer", "lookup", "integrate", "schemas")
CLICK_LAYER = {"orthovec/core/options.py"}

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
#: A string that is one flag and nothing else is an argument for a program orthovec runs (MMseqs2).
PROGRAM_ARGUMENT = re.compile(r"\s*--[a-z0-9-]+\s*")
LOGGING_NAMES = {"log", "logger", "say", "echo", "report"}


def library_modules() -> list[str]:
    found = []
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if path.name != "cli.py" and relative not in CLICK_LAYER:
                found.append(relative)
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants: documentation may show a command line, messages may not."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _problems(source: str, name: str) -> dict[str, list[str]]:
    """Every string a user can read (messages, hints, descriptions: all but docstrings) that spells a
    flag; every `print`; every parameter that takes a logging callable."""
    tree = ast.parse(source, name)
    docstrings = _docstrings(tree)
    problems: dict[str, list[str]] = {"cli flag in a message": [], "print": [], "log callable": []}
    in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if id(node) in in_fstrings or not PROGRAM_ARGUMENT.fullmatch(node.value):
                problems["cli flag in a message"] += [f"line {node.lineno}: {f}" for f in FLAG.findall(node.value)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            called.add(id(node.func))
            problems["print"].append(f"line {node.lineno}")
        elif isinstance(node, ast.arg) and node.arg in LOGGING_NAMES and node.annotation is not None:
            annotation = ast.unparse(node.annotation)
            if "Callable" in annotation:
                problems["log callable"].append(f"line {node.lineno}: {node.arg}: {annotation}")
    for node in ast.walk(tree):  # print handed around as a value (a `log=print` default)
        if isinstance(node, ast.Name) and node.id == "print" and id(node) not in called:
            problems["print"].append(f"line {node.lineno}: print passed as a value")
    return {rule: found for rule, found in problems.items() if found}


@pytest.mark.parametrize("relative", library_modules())
def test_library_modules_name_parameters_and_report_through_logging(relative: str) -> None:
    problems = _problems((ROOT / relative).read_text(), relative)
    assert not problems, f"{relative}: {problems}"


def test_the_scan_sees_what_it_looks_for() -> None:
    """The checks above would pass on an empty scan; show they catch each kind of offence."""
    problems = _problems(
        "import logging, warnings\n"
        "from collections.abc import Callable\n"
        "def f(x, log: Callable[[str], None] = print):\n"
        '    """Documentation may show `orthovec map --margin 0.1`."""\n'
        "    hint = 'or pass --atlas'\n"
        "    if x:\n"
        "        raise ValueError(f'--sensitivity {x}: pass --max-evalue instead')\n"
        "    logging.getLogger('o').info('use --weights')\n"
        "    warnings.warn('see --format')\n"
        "    print('done')\n"
        "    return ['mmseqs', '--threads', '1']  # a subprocess argument is no message\n",
        "sample.py",
    )
    flags = sorted(p.split(": ")[1] for p in problems["cli flag in a message"])
    assert flags == ["--atlas", "--format", "--max-evalue", "--sensitivity", "--weights"]  # not --margin, --threads
    assert len(problems["print"]) == 2 and len(problems["log callable"]) == 1
