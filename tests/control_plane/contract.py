"""Compare the app's OpenAPI document with the contract, operation by operation.

`shape(doc, path, method)` reduces one operation to what clients depend on: path parameter names,
response status codes, query parameters (name → required), request body (media types, field
names, required fields) and the success response (status, media types, top-level fields of the
JSON body, array items' fields for a list). `differences(contract, served)` names every field of
two shapes that differs. Both sides go through the same code, so a route is compared in full as
soon as it is served: nothing is configured per route.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
# The surface of the contract: every route the app serves under these prefixes must be in it.
API_PREFIXES = ("/v1/", "/auth/")
SPEC_ENV = "WRENN_CONTRACT_SPEC"
SPEC_NAME = "wrenn-openapi-0.2.0.yaml"

Doc = dict[str, Any]


SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / SPEC_NAME
# A copy kept with the tests, for checkouts without `../shared/` beside them; a test keeps it equal.
VENDORED_SPEC = Path(__file__).resolve().parent / "spec" / SPEC_NAME


def spec_path() -> Path:
    """`$WRENN_CONTRACT_SPEC`, else `<repo>/../shared/spec/`, else the copy in `tests/control_plane/spec/`."""
    override = os.environ.get(SPEC_ENV)
    if override:
        return Path(override)
    return SHARED_SPEC if SHARED_SPEC.exists() else VENDORED_SPEC


def load_contract() -> Doc:
    document: Doc = yaml.safe_load(spec_path().read_text())
    return document


def resolve(doc: Doc, node: Any) -> Any:
    """Follow local `$ref`s (`#/components/...`) until a non-reference node."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            raise ValueError(f"unresolvable $ref {ref!r}")
        seen.add(ref)
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@dataclass(frozen=True)
class ObjectShape:
    kind: str  # "object" | "array" (described by its items) | "scalar"
    named: bool  # False: an object that names no fields (free-form), which any fields satisfy
    fields: frozenset[str]
    required: frozenset[str]

    def describe(self) -> str:
        if self.kind == "scalar":
            return "scalar"
        of = f"{sorted(self.fields)} (required {sorted(self.required)})" if self.named else "free-form objects"
        return f"{self.kind} of {of}"


def object_shape(doc: Doc, schema: Any) -> ObjectShape:
    """Top-level fields of a schema; `allOf` parts are merged, an array is described by its items."""
    schema = resolve(doc, schema) or {}
    if schema.get("type") == "array" or "items" in schema:
        items = object_shape(doc, schema.get("items", {}))
        return ObjectShape("array", items.named, items.fields, items.required)
    properties: set[str] = set(schema.get("properties", {}))
    required: set[str] = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        sub = object_shape(doc, part)
        properties |= sub.fields
        required |= sub.required
    if properties:
        return ObjectShape("object", True, frozenset(properties), frozenset(required))
    if schema.get("type") == "object" or "additionalProperties" in schema:
        return ObjectShape("object", False, frozenset(), frozenset())
    return ObjectShape("scalar", False, frozenset(), frozenset())


@dataclass(frozen=True)
class OperationShape:
    path_params: frozenset[str]
    statuses: frozenset[str]
    query: tuple[tuple[str, bool], ...]  # (name, required), sorted
    body_required: bool | None  # None: no request body
    body_media: frozenset[str]
    body_json: ObjectShape | None
    success_status: str | None
    success_media: frozenset[str]
    success_json: ObjectShape | None


def _parameters(doc: Doc, path_item: Doc, operation: Doc) -> dict[tuple[str, str], Doc]:
    merged: dict[tuple[str, str], Doc] = {}
    for raw in [*path_item.get("parameters", []), *operation.get("parameters", [])]:
        param = resolve(doc, raw)
        merged[(param["name"], param["in"])] = param
    return merged


def _json_shape(doc: Doc, content: Doc) -> ObjectShape | None:
    media = content.get("application/json")
    if media is None or "schema" not in media:
        return None
    return object_shape(doc, media["schema"])


def shape(doc: Doc, path: str, method: str) -> OperationShape:
    path_item = doc["paths"][path]
    operation = path_item[method]
    params = _parameters(doc, path_item, operation)
    statuses = frozenset(str(status) for status in operation.get("responses", {}))
    body = resolve(doc, operation.get("requestBody")) if "requestBody" in operation else None
    body_content: Doc = (body or {}).get("content", {})
    success = sorted(s for s in statuses if s.startswith("2"))
    success_status = success[0] if success else None
    success_content: Doc = {}
    if success_status is not None:
        responses = operation["responses"]
        raw = responses.get(success_status, responses.get(int(success_status)))
        success_content = resolve(doc, raw).get("content", {}) or {}
    return OperationShape(
        path_params=frozenset(name for name, where in params if where == "path"),
        statuses=statuses,
        query=tuple(sorted((name, bool(p.get("required", False))) for (name, where), p in params.items()
                           if where == "query")),
        body_required=None if body is None else bool(body.get("required", False)),
        body_media=frozenset(body_content),
        body_json=_json_shape(doc, body_content),
        success_status=success_status,
        success_media=frozenset(success_content),
        success_json=_json_shape(doc, success_content),
    )


def _json_differs(contract: ObjectShape | None, served: ObjectShape | None, *, with_required: bool) -> bool:
    if contract is None or served is None:
        return contract != served
    if not contract.named:  # the contract names no fields: any fields are the contract's
        return served.kind != contract.kind
    if with_required:
        return contract != served
    # A response's field names are the contract; which of them are "required" is not stated
    # by the contract for responses (and pydantic marks every output field required).
    return (contract.kind, contract.fields) != (served.kind, served.fields)


def differences(contract: OperationShape, served: OperationShape) -> list[str]:
    """Every aspect in which the served operation is not the contract's, as readable lines."""
    found: list[str] = []
    for field in fields(OperationShape):
        want, got = getattr(contract, field.name), getattr(served, field.name)
        if field.name.endswith("_json"):
            differs = _json_differs(want, got, with_required=field.name.startswith("body"))
        else:
            differs = want != got
        if differs:
            found.append(f"{field.name}: contract {_show(want)}, served {_show(got)}")
    return found


def _show(value: Any) -> str:
    if isinstance(value, ObjectShape):
        return value.describe()
    if isinstance(value, frozenset):
        return str(sorted(value))
    return repr(value)


def operations(doc: Doc) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc.get("paths", {}).items() for method in item if method in METHODS}


def in_api_surface(path: str) -> bool:
    return path.startswith(API_PREFIXES)


_PLACEHOLDER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def template(path: str) -> str:
    """A path with its converters dropped (`{path:path}` → `{path}`), as OpenAPI writes it."""
    return _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", path)


def anonymous(path: str) -> str:
    """A path with parameter names erased, to tell a renamed parameter from a missing route."""
    return _PLACEHOLDER.sub("{}", path)


def placeholders(path: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(path)}


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        refs = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return refs + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []
