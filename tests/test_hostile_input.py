"""Hostile numbers through every front end, from one table of cases (issue 19 item 7).

The cases are not listed per option: each test walks what its front end declares (the command
tree, the manifest's keys, the OpenAPI schema) and sends every numeric parameter the same hostile
values, so an option added tomorrow is covered, or fails here until it is guarded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from fastapi.testclient import TestClient

from orthovec.build.manifest import load_manifest
from orthovec.cli import main
from orthovec.core.options import RuleNumber
from orthovec.lookup.serve.app import create_app
from orthovec.lookup.store import open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.parameters import NumberRule
from tests.test_api import _populate, _write_mapping

#: Refused by every rule: not a number, or below every rule's lowest bound (layer's -100).
ALWAYS_REFUSED = ("nan", "-inf", "-1e300", "-99999999999999999999")


def _hostile(rule: NumberRule) -> list[str]:
    """The values `rule` must refuse: the common ones, its own bounds crossed, and inf unless allowed."""
    values = list(ALWAYS_REFUSED)
    if not rule.allow_inf:
        values.append("inf")
    if rule.low is not None:
        values.append(_text(rule.low) if rule.low_open else _text(rule.low - (1 if rule.kind is int else 0.5)))
    if rule.high is not None:
        values.append(_text(rule.high + (1 if rule.kind is int else 0.5)))
    if rule.kind is int:
        values.append("2.5")
    return values


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(command, info_name=path[-1] if path else "orthovec")
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = list(_commands(main))
NUMBER_OPTIONS = [
    (" ".join(path), command, option)
    for path, command in COMMANDS
    for option in command.params
    if isinstance(option, click.Option) and isinstance(option.type, RuleNumber)
]


def test_every_numeric_option_of_the_command_tree_is_checked_by_a_shared_rule() -> None:
    raw = [
        f"orthovec {' '.join(path)} {option.opts[-1]}"
        for path, command in COMMANDS
        for option in command.params
        if isinstance(option.type, click.types.IntParamType | click.types.FloatParamType)
    ]
    assert not raw, f"numeric options without a shared rule (use number_option): {raw}"
    assert len(NUMBER_OPTIONS) >= 15  # the walk saw the tree (query -k, map --margin, serve --port ...)


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        pytest.param(command, option, value, id=f"{name} {option.opts[-1]} {value}")
        for name, command, option in NUMBER_OPTIONS
        for value in _hostile(option.type.rule)
    ],
)
def test_a_hostile_number_is_a_usage_error_naming_its_option(
    command: click.Command, option: click.Option, value: str
) -> None:
    # make_context parses and checks the arguments without running the command; the hostile
    # option is given first, so it is checked before any missing argument is noticed.
    with pytest.raises(click.BadParameter) as refused:
        command.make_context(command.name, [option.opts[-1], value])
    assert refused.value.param is option
    assert f"'{option.opts[-1]}'" in refused.value.format_message()


@pytest.mark.parametrize(
    ("command", "option"),
    [pytest.param(command, option, id=f"{name} {option.opts[-1]}") for name, command, option in NUMBER_OPTIONS],
)
def test_a_number_within_its_rule_is_accepted(command: click.Command, option: click.Option) -> None:
    """The control: the same check passes a value the rule allows, so the refusals above mean something."""
    rule = option.type.rule
    inside = rule.low + 1 if rule.low is not None else 1
    if rule.high is not None:
        inside = min(inside, rule.high)
    assert option.type.convert(_text(inside), option, None) == inside


def test_the_command_line_shows_the_rule_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["map", "human", "mouse", "--margin", "nan", "--atlas", str(tmp_path)])
    assert result.exit_code == 2
    assert "Invalid value for '--margin': nan: expected a number >= 0 and <= 1." in result.output


# --- the manifest -----------------------------------------------------------------------------------

#: A value each numeric manifest key accepts. A numeric key missing here fails the first test:
#: add it with a valid value, and the hostile cases below cover it.
MANIFEST_VALID: dict[tuple[str, str], object] = {
    ("atlas", "layer"): -1,
    ("atlas", "toks_per_batch"): 4096,
    ("atlas", "align_sensitivity"): 5.7,
    ("atlas", "align_threads"): 1,
    ("atlas", "k"): 10,
    ("atlas", "margin"): 0.1,
    ("atlas", "min_score"): 0.0,
    ("atlas", "max_evalue"): 0.01,
    ("atlas", "csls_k"): 10,
    ("species", "taxid"): 9606,
}


def _numeric_manifest_keys() -> set[tuple[str, str]]:
    from orthovec.build import manifest

    keys = set()
    for table, declared in (("atlas", manifest._ATLAS_KEYS), ("species", manifest._SPECIES_KEYS)):
        keys |= {(table, key) for key, (types, _) in declared.items() if int in types or float in types}
    return keys


def test_every_numeric_manifest_key_is_in_the_table() -> None:
    assert _numeric_manifest_keys() == set(MANIFEST_VALID)


def _manifest(tmp_path: Path, table: str, key: str, value: str) -> Path:
    (tmp_path / "human.fa").write_text(">P1 GN=A\nMKV\n")
    atlas_line = f"{key} = {value}\n" if table == "atlas" else ""
    species_line = f"{key} = {value}\n" if table == "species" else ""
    path = tmp_path / "atlas.toml"
    path.write_text(
        f'[atlas]\nmodel = "esm2_t6_8M_UR50D"\n{atlas_line}\n[[species]]\nname = "human"\nsource = "human.fa"\n'
        f"{species_line}"
    )
    return path


def _toml(value: str) -> str:
    """The hostile values as TOML spells them (its integers are 64-bit: the huge one becomes a float)."""
    return {"-99999999999999999999": "-1e20"}.get(value, value)


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        pytest.param(table, key, value, id=f"{table}.{key}={value}")
        for table, key in MANIFEST_VALID
        for value in (*ALWAYS_REFUSED, "true", '"5"')
    ],
)
def test_a_hostile_manifest_number_is_refused_at_its_line(tmp_path: Path, table: str, key: str, value: str) -> None:
    path = _manifest(tmp_path, table, key, _toml(value))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key} ="))
    with pytest.raises(UserError, match=rf"atlas\.toml:{line}\b.*{key}"):
        load_manifest(path)


@pytest.mark.parametrize(("table", "key"), list(MANIFEST_VALID))
def test_a_manifest_number_within_its_rule_is_accepted(tmp_path: Path, table: str, key: str) -> None:
    value = MANIFEST_VALID[(table, key)]
    manifest = load_manifest(_manifest(tmp_path, table, key, json.dumps(value)))
    entry = manifest.species[0] if table == "species" else manifest.atlas
    held = getattr(entry, key) if hasattr(entry, key) else manifest.atlas.mapping.get(key)
    assert held == value


# --- HTTP ----------------------------------------------------------------------------------------------

#: A valid value for every required parameter of the API, so each request differs from a good one
#: in the hostile number alone. A new required parameter fails loudly here until it is added.
HTTP_VALID = {"species": "human", "q": "GENE", "gene": "GENE1", "from": "human", "to": "mouse",
              "species_a": "human", "species_b": "mouse"}  # fmt: skip
SEQUENCE_BODY = {"sequences": [{"id": "q", "sequence": "MKVLAAGIV"}], "to": ["mouse"]}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    atlas = Atlas(tmp_path_factory.mktemp("hostile") / "atlas")
    store = open_store(atlas)
    _populate(store)
    _write_mapping(atlas)

    def embed(sequences: list[str], model: str) -> np.ndarray:
        return np.ones((len(sequences), 16), dtype=np.float32)

    try:
        yield TestClient(create_app(store, atlas, sequence_embedder=embed))
    finally:
        store.close()


def _numeric(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The number schema inside a (possibly nullable) parameter schema, or None."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") in ("integer", "number"):
            return option
    return None


def _http_hostile(schema: dict[str, Any]) -> list[Any]:
    values: list[Any] = [math.nan, math.inf, -math.inf, -1e300, 1e400]
    if "minimum" in schema:
        values.append(schema["minimum"] - 1)
    if "maximum" in schema:
        values.append(schema["maximum"] + 1)
    if schema["type"] == "integer":
        values.append(2.5)
    return values


def _number_parameters(client: TestClient) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, name, number schema) of every numeric query parameter and body field."""
    spec = client.app.openapi()  # type: ignore[attr-defined]
    found = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for parameter in operation.get("parameters", []):
                number = _numeric(parameter["schema"])
                if number is not None:
                    found.append((method, path, parameter["name"], number))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                model = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
                for name, field in model["properties"].items():
                    number = _numeric(field)
                    if number is not None:
                        found.append((method, path, name, number))
    return found


def _send(client: TestClient, method: str, path: str, name: str, value: Any) -> Any:
    url = re.sub(r"\{(\w+)\}", lambda m: HTTP_VALID[m.group(1)], path)
    if method == "post":
        body = json.dumps({**SEQUENCE_BODY, name: value})  # json writes NaN and Infinity, as careless clients do
        return client.post(url, content=body, headers={"content-type": "application/json"})
    spec = client.app.openapi()  # type: ignore[attr-defined]
    required = [p["name"] for p in spec["paths"][path][method].get("parameters", []) if p.get("required")]
    params = {key: HTTP_VALID[key] for key in required if key not in re.findall(r"\{(\w+)\}", path)}
    text = value if isinstance(value, str) else ("nan" if value != value else repr(value))
    return client.get(url, params={**params, name: text})


def test_every_numeric_http_field_is_bounded_and_a_hostile_value_is_a_422_naming_it(client: TestClient) -> None:
    parameters = _number_parameters(client)
    assert {(path, name) for _, path, name, _ in parameters} >= {("/homologs", "k"), ("/homologs/sequence", "k")}
    for method, path, name, schema in parameters:
        assert "minimum" in schema or "exclusiveMinimum" in schema, f"{method} {path} {name} has no lower bound"
        control = _send(client, method, path, name, schema.get("default", schema.get("minimum")))
        assert control.status_code == 200, (method, path, name, control.text)
        for value in _http_hostile(schema):
            answer = _send(client, method, path, name, value)
            assert answer.status_code == 422, (method, path, name, value, answer.status_code, answer.text)
            assert name in answer.text, (method, path, name, value, answer.text)
