"""Check recorded stand-in responses against Discord's own OpenAPI description.

The stand-in is only useful while it answers like Discord. This module validates a response
body against the schema the spec gives for (method, route template, status), using a small
validator for the JSON-Schema subset the spec uses: ``type`` (a name or a list, ``"null"``
included), ``properties``, ``required``, ``additionalProperties``, ``items``,
``minItems``/``maxItems``, ``uniqueItems``, ``oneOf``/``anyOf``/``allOf``, ``$ref``, ``enum``,
``const``, ``minLength``/``maxLength``, ``pattern`` and ``minimum``/``maximum``. ``format`` and
the descriptive keywords are ignored.

The spec is read from ``$DISCORD_OPENAPI_SPEC`` or ``../shared/discord-api-spec/openapi.json``
beside the repository, where CI and every developer machine have it (Discord's
``discord-api-spec`` repository, ``specs/openapi.json``).

    spec = load_spec()                      # None when the file is absent
    errors = spec.check_response("GET", "/users/@me", 200, body)
    assert_records_match_spec(spec, fake.requests)
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

SPEC_ENV = "DISCORD_OPENAPI_SPEC"
DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared/discord-api-spec/openapi.json"

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class ExchangeRecord(Protocol):
    """What the checker reads from a recorded request (``fake_discord.RequestRecord``)."""

    method: str
    route: str
    status: int
    response: Any
    content_type: str | None
    injected: bool


def spec_path() -> Path | None:
    path = Path(os.environ.get(SPEC_ENV) or DEFAULT_SPEC)
    return path if path.is_file() else None


@functools.cache
def load_spec() -> OpenAPISpec | None:
    path = spec_path()
    if path is None:
        return None
    return OpenAPISpec(_corrected(json.loads(path.read_text(encoding="utf-8"))))


def _corrected(document: dict[str, Any]) -> dict[str, Any]:
    """Fix the spec where it contradicts what Discord actually sends (keep this list short).

    Field errors inside ``errors`` carry string codes ("BASE_TYPE_MAX_LENGTH"), not integers:
    the spec reuses the top-level ``Error`` schema for them.
    """
    schemas = document["components"]["schemas"]
    field_error = {**schemas["Error"], "properties": dict(schemas["Error"]["properties"])}
    field_error["properties"]["code"] = {"type": "string"}
    schemas["FieldError"] = field_error
    schemas["InnerErrors"]["properties"]["_errors"]["items"] = {
        "$ref": "#/components/schemas/FieldError"
    }
    return document


class OpenAPISpec:
    def __init__(self, document: dict[str, Any]) -> None:
        self._doc = document

    def has_route(self, method: str, route: str) -> bool:
        return method.lower() in self._doc["paths"].get(route, {})

    def response_schema(self, method: str, route: str, status: int) -> dict[str, Any] | None:
        """The body schema for this status; None when the spec says "no body" (e.g. 204).

        Raises KeyError when the spec does not describe the route, method or status.
        """
        responses = self._doc["paths"][route][method.lower()]["responses"]
        key = next(
            (k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None
        )
        if key is None:
            raise KeyError(f"{method} {route}: no response described for status {status}")
        response = self._resolve(responses[key])
        content = response.get("content")
        return None if content is None else content["application/json"]["schema"]

    def check_response(self, method: str, route: str, status: int, body: Any) -> list[str]:
        try:
            schema = self.response_schema(method, route, status)
        except KeyError as exc:
            return [str(exc)]
        if schema is None:
            return [] if body is None else [f"status {status} has no body in the spec"]
        return self.validate(body, schema)

    def validate(self, value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
        schema = self._resolve(schema)
        errors = self._check_type(value, schema, where)
        if errors:
            return errors
        for keyword in ("allOf", "anyOf", "oneOf"):
            if keyword in schema:
                errors += self._check_combinator(keyword, value, schema[keyword], where)
        errors += self._check_scalar(value, schema, where)
        if isinstance(value, dict):
            errors += self._check_object(value, schema, where)
        elif isinstance(value, list):
            errors += self._check_array(value, schema, where)
        return errors

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self._doc
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    @staticmethod
    def _check_type(value: Any, schema: dict[str, Any], where: str) -> list[str]:
        declared = schema.get("type")
        if declared is None:
            return []
        names = [declared] if isinstance(declared, str) else declared
        for name in names:
            # bool is an int subclass in Python but not a JSON integer.
            if isinstance(value, _PY_TYPES[name]) and not (
                isinstance(value, bool) and name in ("integer", "number")
            ):
                return []
        return [f"{where}: expected {'/'.join(names)}, got {type(value).__name__}"]

    def _check_combinator(
        self, keyword: str, value: Any, branches: list[dict[str, Any]], where: str
    ) -> list[str]:
        results = [self.validate(value, branch, where) for branch in branches]
        passed = sum(1 for r in results if not r)
        if keyword == "allOf":
            return [e for r in results for e in r]
        if (keyword == "anyOf" and passed >= 1) or (keyword == "oneOf" and passed == 1):
            return []
        closest = min(results, key=len)
        detail = f"; closest branch: {closest[0]}" if closest else ""
        return [f"{where}: matches {passed} of {len(branches)} {keyword} branches{detail}"]

    @staticmethod
    def _check_scalar(value: Any, schema: dict[str, Any], where: str) -> list[str]:
        errors = []
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{where}: {value!r} not in enum {schema['enum']}")
        if "const" in schema and value != schema["const"]:
            errors.append(f"{where}: {value!r} != const {schema['const']!r}")
        if isinstance(value, str):
            if len(value) > schema.get("maxLength", len(value)):
                errors.append(f"{where}: longer than {schema['maxLength']}")
            if len(value) < schema.get("minLength", 0):
                errors.append(f"{where}: shorter than {schema['minLength']}")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"{where}: {value} < minimum {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(f"{where}: {value} > maximum {schema['maximum']}")
        return errors

    def _check_object(self, value: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
        errors = [
            f"{where}: missing {key!r}" for key in schema.get("required", ()) if key not in value
        ]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += self.validate(item, properties[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += self.validate(item, extra, f"{where}.{key}")
        return errors

    def _check_array(self, value: list[Any], schema: dict[str, Any], where: str) -> list[str]:
        errors = []
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(
            value
        ):
            errors.append(f"{where}: items are not unique")
        if "items" in schema:
            for index, item in enumerate(value):
                errors += self.validate(item, schema["items"], f"{where}[{index}]")
        return errors


def record_errors(spec: OpenAPISpec, record: ExchangeRecord) -> list[str]:
    """Spec violations of one recorded exchange (Content-Type included)."""
    label = f"{record.method} {record.route} -> {record.status}"
    if record.response is not None and record.content_type != "application/json":
        return [f"{label}: Content-Type {record.content_type!r} is not exactly application/json"]
    return [f"{label}: {e}" for e in spec.check_response(**_exchange(record))]


def assert_records_match_spec(spec: OpenAPISpec, records: Iterable[ExchangeRecord]) -> int:
    """Raise AssertionError listing every violation; returns how many records were checked.

    Unknown routes are the stand-in's business (``fake.unknown_routes``) and injected 5xx faults
    have no schema in the spec, so both are left out.
    """
    checked, errors = 0, []
    for record in records:
        if not record.route or (record.injected and record.status >= 500):
            continue
        checked += 1
        errors += record_errors(spec, record)
    assert not errors, "responses that do not match Discord's OpenAPI spec:\n" + "\n".join(errors)
    return checked


def _exchange(record: ExchangeRecord) -> dict[str, Any]:
    return {
        "method": record.method,
        "route": record.route,
        "status": record.status,
        "body": record.response,
    }
