"""The served OpenAPI document against the 0.2.0 contract (`../shared/spec/`, see `contract.py`).

Every operation both documents have is compared in full and any difference fails. A route the
app serves under `/v1/` or `/auth/` that the contract does not have fails. Contract operations
not built yet do not fail: they are listed in the "Wrenn contract" section of the terminal
summary, with the count, so what remains is always visible. Building a route moves it from that
list into the strict comparison without touching this file.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import WebSocketRoute

from . import contract
from .contract import Doc

OPENAPI_STATUS = re.compile(r"^([1-5][0-9][0-9]|[1-5]XX|default)$")


@pytest.fixture
def backend() -> str:
    """The served document does not depend on the database: one backend is enough here."""
    return "sqlite"


@pytest.fixture(scope="module")
def contract_doc() -> Doc:
    return contract.load_contract()


@pytest.fixture
async def served_doc(client: httpx.AsyncClient) -> Doc:
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: Doc = response.json()
    return document


@dataclass
class Comparison:
    built: list[tuple[str, str]] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    unbuilt: list[tuple[str, str, str]] = field(default_factory=list)  # path, method, operationId
    problems: list[str] = field(default_factory=list)


def compare(contract_doc: Doc, served_doc: Doc, app_routes: list[Any]) -> Comparison:
    result = Comparison()
    wanted = contract.operations(contract_doc)
    served = contract.operations(served_doc)
    wanted_by_anonymous = {contract.anonymous(path): path for path, _ in wanted}

    for path, method in sorted(served - wanted):
        if contract.in_api_surface(path):
            hint = wanted_by_anonymous.get(contract.anonymous(path))
            note = f" (the contract names its parameters {hint})" if hint else ""
            result.problems.append(f"{method.upper()} {path}: served but not in the contract{note}")
    for path, method in sorted(served & wanted):
        result.built.append((path, method))
        for line in contract.differences(
            contract.shape(contract_doc, path, method), contract.shape(served_doc, path, method)
        ):
            result.problems.append(f"{method.upper()} {path}: {line}")

    websocket_paths: set[str] = set()
    # Included routers are not flattened into `app.routes`: walk their effective routes.
    for context in iter_route_contexts(app_routes):
        route, path = context.original_route, contract.template(context.path or "")
        if not contract.in_api_surface(path):
            continue
        if isinstance(route, WebSocketRoute):
            if (path, "get") in wanted:
                websocket_paths.add(path)
            else:
                result.problems.append(f"WEBSOCKET {path}: served but not in the contract")
        elif isinstance(route, APIRoute) and not context.include_in_schema:
            for method in sorted(m.lower() for m in context.methods or ()):
                where = "in the contract" if (path, method) in wanted else "not in the contract"
                result.problems.append(f"{method.upper()} {path}: served, hidden from /openapi.json, {where}")
    result.websockets = sorted(websocket_paths)

    for path, method in sorted(wanted - served):
        if method == "get" and path in websocket_paths:
            continue  # a WebSocket endpoint: OpenAPI cannot describe it, the route exists
        operation_id = contract_doc["paths"][path][method].get("operationId", "")
        result.unbuilt.append((path, method, operation_id))
    return result


class ContractSummary:
    """Writes the contract's unbuilt routes into pytest's terminal summary."""

    name = "wrenn-contract-summary"

    def __init__(self, result: Comparison, total: int) -> None:
        self.result = result
        self.total = total

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        built = len(self.result.built) + len(self.result.websockets)
        terminalreporter.section("Wrenn contract (0.2.0)")
        terminalreporter.write_line(
            f"{built} of {self.total} contract operations built and compared "
            f"({len(self.result.websockets)} of them WebSockets); {len(self.result.unbuilt)} not built yet:"
        )
        for path, method, operation_id in self.result.unbuilt:
            terminalreporter.write_line(f"  not built  {method.upper():7} {path}  ({operation_id})")


def _report(config: pytest.Config, result: Comparison, total: int) -> None:
    manager = config.pluginmanager
    previous = manager.get_plugin(ContractSummary.name)
    if previous is not None:
        manager.unregister(previous)
    manager.register(ContractSummary(result, total), ContractSummary.name)


async def test_served_routes_match_the_contract(
    app: FastAPI, contract_doc: Doc, served_doc: Doc, request: pytest.FixtureRequest
) -> None:
    result = compare(contract_doc, served_doc, list(app.routes))
    _report(request.config, result, len(contract.operations(contract_doc)))
    if result.problems:
        hint = ""
        if any("'422'" in line for line in result.problems):
            hint = (
                "\n(422: FastAPI documents it on every route with parameters or a body, but the app answers "
                "validation errors with 400 (errors.py); the served document must not list 422.)"
            )
        pytest.fail("the served API differs from the contract:\n" + "\n".join(result.problems) + hint, pytrace=False)
    # The teams/API-key/admin routes are built: an empty comparison would mean a broken loader.
    assert ("/v1/teams", "post") in result.built


async def test_served_document_is_openapi_3(served_doc: Doc, contract_doc: Doc) -> None:
    assert re.fullmatch(r"3\.\d+\.\d+", served_doc.get("openapi", "")), served_doc.get("openapi")
    assert served_doc["info"]["title"] == contract_doc["info"]["title"]
    assert served_doc["info"]["version"] == contract_doc["info"]["version"]
    assert isinstance(served_doc.get("paths"), dict) and served_doc["paths"]
    assert isinstance(served_doc.get("components", {}).get("schemas"), dict)

    operation_ids: list[str] = []
    for path, item in served_doc["paths"].items():
        assert path.startswith("/"), path
        for method, operation in item.items():
            if method not in contract.METHODS:
                assert method in ("parameters", "summary", "description", "servers"), (path, method)
                continue
            responses = operation.get("responses")
            assert isinstance(responses, dict) and responses, f"{method} {path} declares no responses"
            for status, response in responses.items():
                assert OPENAPI_STATUS.match(str(status)), (path, method, status)
                assert "description" in contract.resolve(served_doc, response), (path, method, status)
            params = contract._parameters(served_doc, item, operation)
            declared = {name for name, where in params if where == "path"}
            assert declared == contract.placeholders(path), f"{method} {path}: path parameters {declared}"
            assert all(params[(name, "path")].get("required") is True for name in declared), (path, method)
            if "operationId" in operation:
                operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids)), "duplicate operationId"

    for ref in contract.all_refs(served_doc):
        contract.resolve(served_doc, {"$ref": ref})  # raises on a dangling reference


# The comparison itself, on a copy of the contract changed in one place at a time: each change
# must be reported, so a comparison that silently passes everything cannot go unnoticed.

def _mutated(contract_doc: Doc, change: Any) -> Doc:
    served = copy.deepcopy(contract_doc)
    change(served)
    return served


def _json_schema(d: Doc, path: str, method: str) -> Doc:
    schema: Doc = d["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return schema


MUTATIONS: dict[str, tuple[Any, str]] = {
    "status added": (
        lambda d: d["paths"]["/v1/teams/{id}"]["get"]["responses"].update({"422": {"description": "x"}}),
        "statuses",
    ),
    "status dropped": (lambda d: d["paths"]["/v1/teams/{id}"]["get"]["responses"].pop("404"), "statuses"),
    "body field added": (
        lambda d: _json_schema(d, "/v1/teams", "post")["properties"].update({"title": {"type": "string"}}),
        "body_json",
    ),
    "body field no longer required": (lambda d: _json_schema(d, "/v1/teams", "post").update({"required": []}),
                                      "body_json"),
    "response field dropped (through $ref and allOf)": (
        lambda d: d["components"]["schemas"]["Team"]["properties"].pop("slug"),
        "success_json",
    ),
    "query parameter optional": (
        lambda d: d["paths"]["/v1/users/search"]["get"]["parameters"][0].update({"required": False}),
        "query",
    ),
    "success response not JSON": (
        lambda d: d["paths"]["/v1/teams"]["get"]["responses"]["200"].update(
            {"content": {"text/plain": {"schema": {"type": "string"}}}}
        ),
        "success_media",
    ),
}


@pytest.mark.parametrize("label", sorted(MUTATIONS))
def test_comparison_reports_each_kind_of_difference(contract_doc: Doc, label: str) -> None:
    change, expected = MUTATIONS[label]
    found = compare(contract_doc, _mutated(contract_doc, change), []).problems
    assert any(f": {expected}:" in line for line in found), (label, found)


def test_comparison_reports_routes_outside_the_contract(contract_doc: Doc) -> None:
    def rename_parameter(d: Doc) -> None:
        d["paths"]["/v1/teams/{team_id}/leave"] = d["paths"].pop("/v1/teams/{id}/leave")

    found = compare(contract_doc, _mutated(contract_doc, rename_parameter), []).problems
    assert any("POST /v1/teams/{team_id}/leave: served but not in the contract" in line for line in found), found
    unbuilt = compare(contract_doc, _mutated(contract_doc, rename_parameter), []).unbuilt
    assert ("/v1/teams/{id}/leave", "post", "leaveTeam") in unbuilt


def test_identical_documents_compare_clean(contract_doc: Doc) -> None:
    result = compare(contract_doc, copy.deepcopy(contract_doc), [])
    assert result.problems == []
    assert result.unbuilt == []
    assert len(result.built) == len(contract.operations(contract_doc))


def test_websocket_routes_count_as_built_and_hidden_routes_fail(contract_doc: Doc) -> None:
    async def endpoint(*_: Any) -> None:
        return None

    routes = [
        WebSocketRoute("/v1/capsules/{id}/pty", endpoint),
        WebSocketRoute("/v1/capsules/{id}/telepathy", endpoint),
        APIRoute("/v1/teams/{id}/secret", endpoint, methods=["GET"], include_in_schema=False),
    ]
    result = compare(contract_doc, copy.deepcopy(contract_doc), routes)
    assert result.websockets == ["/v1/capsules/{id}/pty"]
    assert result.problems == [
        "WEBSOCKET /v1/capsules/{id}/telepathy: served but not in the contract",
        "GET /v1/teams/{id}/secret: served, hidden from /openapi.json, not in the contract",
    ]


def test_routes_of_included_routers_are_walked(contract_doc: Doc) -> None:
    app = FastAPI()
    router = APIRouter(prefix="/v1/capsules")

    @router.websocket("/{id}/pty")
    async def pty(websocket: WebSocket, id: str) -> None:
        return None

    @router.get("/{id}/hidden", include_in_schema=False)
    async def hidden(id: str) -> None:
        return None

    app.include_router(router)
    result = compare(contract_doc, copy.deepcopy(contract_doc), list(app.routes))
    assert result.websockets == ["/v1/capsules/{id}/pty"]
    assert result.problems == ["GET /v1/capsules/{id}/hidden: served, hidden from /openapi.json, not in the contract"]


def test_the_copy_kept_with_the_tests_is_the_shared_contract() -> None:
    """`tests/control_plane/spec/` serves checkouts without `../shared/`; it must not drift from it."""
    if not contract.SHARED_SPEC.exists():
        pytest.skip(f"no {contract.SHARED_SPEC} beside this checkout to compare with")
    assert contract.VENDORED_SPEC.read_bytes() == contract.SHARED_SPEC.read_bytes(), (
        f"copy {contract.VENDORED_SPEC} differs from {contract.SHARED_SPEC}: copy the shared one over it")
