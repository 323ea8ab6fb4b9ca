"""A schemathesis check (loaded through `SCHEMATHESIS_HOOKS`) for the contract's error rule: an answer
has a status code the contract lists for its operation, or is one of the API's client errors in the
contract's error shape `{"error": {"code", "message"}}` — the contract lists the generic refusals
(400 bad input, 401 no credentials, 403, 404, 409, 413, 429) on some operations only."""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import _expand_status_codes

CLIENT_ERRORS = frozenset({400, 401, 403, 404, 405, 409, 413, 415, 429})


@schemathesis.check
def status_code_or_contract_error(ctx: Any, response: Any, case: Any) -> None:
    documented = set(_expand_status_codes(case.operation.responses.status_codes))
    if response.status_code in documented:
        return
    if response.status_code in CLIENT_ERRORS:
        try:
            error = json.loads(response.content)["error"]
        except (ValueError, KeyError, TypeError):
            error = None
        if isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str):
            return
    raise AssertionError(f"{response.status_code} is not among the documented {sorted(documented)} nor a client "
                         f"error in the contract's shape: {response.content[:300]!r}")
