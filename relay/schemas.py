"""The JSON Schemas of schemas/, loaded once; validate(name, doc) -> one Detail per violation.

Format checking is on: jsonschema ignores `format` unless given a checker, and checks `uri`
only when rfc3986-validator is installed (it is a dependency of relay for that reason).

Validation sits on the intake's hot path, where jsonschema costs ~270 µs for a Docker Hub
push: 1.5x the whole of a bare aiohttp request. jsonschema-rs (a compiled 2020-12 validator,
~3 µs) answers the common question "is it valid?"; jsonschema, the reference, explains
every refusal and has the last word on anything jsonschema-rs refuses. A test keeps the two
in agreement on generated documents.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema import Draft202012Validator

from relay.errors import Detail

_CUSTOM_MESSAGE_VALIDATORS = frozenset({"pattern", "format", "anyOf", "oneOf"})


def schema_files() -> Any:
    """schemas/ as shipped inside the wheel, or beside the package in a source checkout."""
    packaged = resources.files("relay") / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (schema_files() / f"{name}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(loaded)
    return loaded


@functools.cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def fast_validator(name: str) -> Any:
    return jsonschema_rs.validator_for(schema(name), validate_formats=True)


def validate(name: str, document: Any) -> list[Detail]:
    """Every violation of schema `name`, as JSON pointers into `document`, sorted by pointer
    (each violation once)."""
    if fast_validator(name).is_valid(document):
        return []
    found = validator(name).iter_errors(document)
    unique = dict.fromkeys(_detail(error) for error in found)
    return sorted(unique, key=lambda d: d.path)


def _detail(error: jsonschema.ValidationError) -> Detail:
    path = list(error.absolute_path)
    instance: Any = error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    match error.validator:
        case "required":
            missing = _missing_property(error.message, expected)
            return Detail(pointer([*path, missing]), "is required")
        case "type":
            names = " or ".join(expected) if isinstance(expected, list) else expected
            return Detail(pointer(path), f"must be of type {names}, not {_json_type(error)}")
        case "maxLength":
            return Detail(pointer(path), f"must be at most {error.validator_value} characters"
                                         f" long (it has {len(instance)})")
        case "minLength":
            return Detail(pointer(path), f"must be at least {error.validator_value} "
                                         "characters long")
        case "enum":
            choices = ", ".join(json.dumps(v) for v in expected)
            return Detail(pointer(path), f"must be one of {choices}")
        case "minimum":
            return Detail(pointer(path), f"must be at least {error.validator_value}")
        case validator_name if validator_name in _CUSTOM_MESSAGE_VALIDATORS and (
                "x-message" in schema):
            return Detail(pointer(path), str(schema["x-message"]))
        case "format":
            return Detail(pointer(path), f"must be a valid {error.validator_value}")
        case _:
            return Detail(pointer(path), _short(error.message))


def pointer(parts: list[Any]) -> str:
    """RFC 6901 JSON pointer; the whole document is ''."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _missing_property(message: str, required: list[str]) -> str:
    """jsonschema reports each missing property as its own error; find which one this is."""
    for name in required:
        if message == f"{name!r} is a required property":
            return str(name)
    return "?"


def _json_type(error: jsonschema.ValidationError) -> str:
    instance = error.instance
    if instance is None:
        return "null"
    if isinstance(instance, bool):
        return "boolean"
    if isinstance(instance, int | float):
        return "number"
    if isinstance(instance, str):
        return "string"
    if isinstance(instance, list):
        return "array"
    return "object"


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def names() -> Iterator[str]:
    for entry in schema_files().iterdir():
        if entry.name.endswith(".json"):
            yield entry.name.removesuffix(".json")
