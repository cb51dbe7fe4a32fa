"""The README and the docs pages cannot rot: the README's tour and Python example run, every
`orthovec` command line shown anywhere names real commands, options and choices, the test command
is the one CI runs, and the front door stays short (issue 21)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orthovec.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NOT_RUN = "(not run by the test)"


def _blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.M | re.S)


def _command_lines(block: str) -> list[tuple[str, str]]:
    """Each shell line of a block (continuations joined) without its comment, beside the raw text."""
    found = []
    for raw in block.replace("\\\n", " ").splitlines():
        words = shlex.split(raw, comments=True)
        if words:
            found.append((shlex.join(words), raw))
    return found


def _orthovec_lines(path: Path) -> list[list[str]]:
    """The words of every `orthovec ...` invocation in the page: in bash blocks (chains split at && | ;)
    and in inline code in the prose."""
    found = []
    for block in _blocks(path, "bash"):
        for line, _ in _command_lines(block):
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for token in [*lexer, ";"]:
                if token in ("&&", "||", "|", ";", "&"):
                    if command and command[0] in ("orthovec", ".venv/bin/orthovec"):
                        found.append(command[1:])
                    command = []
                else:
                    command.append(token)
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S).replace("\n", " ")
    for span in re.findall(r"`orthovec ([^`]+)`", text):  # inline, in prose
        words = shlex.split(span)
        if len(words) >= 2:  # `orthovec score` is a column name, not a command
            found.append(words)
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command a command line names and the words after it."""
    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        context = click.Context(command)
        found = command.get_command(context, rest[0])
        assert found is not None, f"no command {rest[0]!r}"
        command, rest = found, rest[1:]
    return command, rest


def _check_options(command: click.Command, words: list[str]) -> None:
    declared = [param for param in command.params if isinstance(param, click.Option)]
    options = {opt: param for param in declared for opt in (*param.opts, *param.secondary_opts)}
    for i, word in enumerate(words):
        if not word.startswith("-") or word in ("-h", "--help"):
            continue
        name, _, inline = word.partition("=")
        assert name in options, f"{command.name} has no option {name}"
        param = options[name]
        value = inline or (words[i + 1] if i + 1 < len(words) else "")
        if isinstance(param.type, click.Choice) and not param.is_flag:  # `--arch 8M|tiny` shows alternatives
            wrong = [choice for choice in value.split("|") if choice not in param.type.choices]
            assert not wrong, f"{command.name} {name} {value}: not one of {param.type.choices}"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_command_line_in_the_docs_names_real_commands_options_and_choices(page: Path) -> None:
    for words in _orthovec_lines(page):
        try:
            command, rest = _resolve(words)
            _check_options(command, rest)
        except AssertionError as err:
            raise AssertionError(f"{page.name}: `orthovec {shlex.join(words)}`: {err}") from None


def test_the_check_catches_a_renamed_option_a_bad_choice_and_an_unknown_command() -> None:
    with pytest.raises(AssertionError, match="species has no option --formats"):
        _check_options(*_resolve(["species", "--formats", "json"]))
    with pytest.raises(AssertionError, match="--format yaml: not one of"):
        _check_options(*_resolve(["species", "--format", "yaml"]))
    with pytest.raises(AssertionError, match="no command 'species-list'"):
        _resolve(["species-list"])


def test_the_pages_show_command_lines_at_all() -> None:
    """The check above passes vacuously on pages without commands; the reference pages have many."""
    assert len(_orthovec_lines(README)) >= 8 and len(_orthovec_lines(ROOT / "docs" / "cli.md")) >= 5


def test_the_readme_test_command_is_what_ci_runs() -> None:
    tests_section = README.read_text().split("## Tests", 1)[1]
    readme_command = _blocks_of_text(tests_section, "bash")[0].strip()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == readme_command
    assert "mkdocs build --strict" in readme_command and "--quiet" not in readme_command  # --quiet hides warnings


def _blocks_of_text(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def test_the_readme_is_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Setup", "## Main job", "## Tests", "## A tour", "## Documentation"):
        assert heading in text
    linked = re.findall(r"\]\((docs/[^)#]+)", text)
    assert linked and all((ROOT / link).is_file() for link in linked), linked


def test_every_docs_page_is_in_the_site_navigation() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = {next(iter(entry.values())) for entry in config["nav"]}
    assert in_nav == {page.name for page in DOCS}


@pytest.fixture
def repository_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory laid out as the README assumes (the shipped examples under orthovec/)."""
    (tmp_path / "orthovec").mkdir()
    (tmp_path / "orthovec" / "examples").symlink_to(ROOT / "orthovec" / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORTHOVEC_ATLAS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


@pytest.mark.usefixtures("umap_compiled")  # the tour integrates (tests/conftest.py)
def test_the_readme_tour_and_python_example_run(repository_like: Path) -> None:
    tour_section = README.read_text().split("## A tour", 1)[1]
    [tour, *_] = _blocks_of_text(tour_section, "bash")
    runner = CliRunner()
    outputs = []
    for line, raw in _command_lines(tour):
        if NOT_RUN in raw:
            continue
        words = shlex.split(line)
        assert words[0] == "orthovec", line
        result = runner.invoke(main, words[1:])
        assert result.exit_code == 0, f"`{line}`:\n{result.output}"
        outputs.append(result.stdout)
    # The tour's query finds ETF1's frog ortholog (alignment evidence: real, with random weights).
    assert "etf1" in outputs[-1]

    [python] = _blocks_of_text(tour_section, "python")
    namespace: dict[str, object] = {}
    exec(compile(python, "README.md", "exec"), namespace)
    assert len(namespace["mapping"]) > 0  # type: ignore[arg-type]


#: The folders that install as the `orthovec` package, and their import names.
PACKAGES = {
    "orthovec": "orthovec",
    "indexer": "orthovec.indexer",
    "lookup": "orthovec.lookup",
    "integrate": "orthovec.integrate",
    "schemas": "orthovec.schemas",
}


def _modules_with_examples() -> list[str]:
    """Modules whose docstrings hold `>>>` examples (found in the source, so nothing heavy is imported)."""
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if ">>> " in path.read_text():
                parts = path.relative_to(ROOT / folder).with_suffix("").parts
                found.append(".".join((package, *parts)).removesuffix(".__init__"))
    return found


def test_the_package_docstring_shows_runnable_examples() -> None:
    assert "orthovec" in _modules_with_examples()


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples_run(module: str, demo_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As pyhmmer does: every docstring example runs, on the demo atlas where it needs one."""
    import doctest
    import importlib

    (tmp_path / "orthovec-demo").symlink_to(demo_atlas)
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(importlib.import_module(module)):
        runner.run(test, out=report.append)
    assert runner.tries > 0 and runner.failures == 0, "".join(report)
