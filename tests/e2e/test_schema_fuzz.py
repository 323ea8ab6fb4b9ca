"""Schema fuzzing of the served API with schemathesis (pinned in the dev extras): every operation of
the contract, generated requests (valid and invalid) sent to a `wrenn server` process as a signed-up
team member (session and API key), and every answer checked: no server error (5xx), a status code,
content type and body the contract lists for the operation.

`make test` runs a bounded subset (`FAST_EXAMPLES` per operation). The full run, whose figures
SECURITY.md records:

    WRENN_FUZZ_FULL=1 .venv/bin/python -m pytest tests/e2e/test_schema_fuzz.py -q -s

Operations that would end the caller's own session or account mid-run (logout, password change,
account deletion, switching team) are left out: they only act on the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from ..control_plane.contract import spec_path
from .conftest import Shipped, wait_status
from .users import log_in, new_key, sign_up

# One capsule at most (a second create answers 403 limit_exceeded), so the fuzzer cannot fill the host.
SERVER_ENV = {"WRENN_TEAM_MAX_CAPSULES": "1"}
FULL = os.environ.get("WRENN_FUZZ_FULL") == "1"
FAST_EXAMPLES = 2
FULL_EXAMPLES = 50
# `status_code_or_contract_error` is ours (`fuzz_checks.py`): schemathesis' status check with the
# contract's error rule.
CHECKS = "not_a_server_error,status_code_or_contract_error,content_type_conformance,response_schema_conformance"
REPO = Path(__file__).resolve().parents[2]
# What ends the fuzzing user's own session, account or API key (schemathesis feeds ids it has seen
# in answers, the key's own included, to later requests).
SELF_ENDING = r"^/v1/(auth/(logout|logout-all|switch-team)|me|me/password|me/sessions/\{id\})$"
SELF_ENDING_OPERATIONS = ("deleteAPIKey",)
ST = Path(sys.executable).parent / "st"


def test_fuzzed_requests_get_no_5xx_and_only_contract_answers(shipped: Shipped) -> None:
    with httpx.Client(base_url=shipped.url, timeout=60) as http:
        email, password, _ = sign_up(shipped, http)
        session = log_in(http, email, password)
        key = new_key(http, session)
        # The key is made with the first session; fuzzing uses a second so a fuzzed
        # `DELETE /v1/api-keys/{id}` or session revocation cannot cut its own header.
        session = log_in(http, email, password)
    # `WRENN_FUZZ_REPORT=PATH` keeps schemathesis' event log (the module's directory goes at its end).
    report = Path(os.environ.get("WRENN_FUZZ_REPORT") or shipped.root / "fuzz.ndjson")
    argv = [str(ST), "run", str(spec_path()), "--url", shipped.url, "--checks", CHECKS,
            "--max-examples", str(FULL_EXAMPLES if FULL else FAST_EXAMPLES), "--seed", "18",
            "--exclude-path-regex", SELF_ENDING,
            *[arg for op in SELF_ENDING_OPERATIONS for arg in ("--exclude-operation-id", op)],
            "--request-timeout", "60", "--workers", "1",
            "--phases", "examples,coverage,fuzzing,stateful" if FULL else "examples,fuzzing",
            "--suppress-health-check", "all", "--no-color",
            "-H", f"X-API-Key: {key}", "-H", f"Cookie: {session['Cookie']}",
            "-H", f"X-CSRF-Token: {session['X-CSRF-Token']}",
            "--report", "ndjson", "--report-ndjson-path", str(report)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_checks", "PYTHONPATH": str(REPO)}
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=env, cwd=shipped.root)
    finally:
        with httpx.Client(base_url=shipped.url, timeout=60) as http:
            _destroy_capsules(shipped.url, new_key(http, log_in(http, email, password)))
    print(run.stdout[run.stdout.find("=== SUMMARY"):])
    requests = _count_requests(report)
    print(f"schema fuzzing: {requests} requests, exit {run.returncode}")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert requests > 100


def _destroy_capsules(url: str, key: str) -> None:
    """Destroy the fuzzing team's capsules (the module's fixture destroys only the admin's team's), with
    a fresh key: the fuzzer may have revoked its own."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as api:
        listed = api.get("/v1/capsules")
        assert listed.status_code == 200, listed.text
        for capsule in listed.json():
            if capsule["status"] not in ("stopped", "stopping"):
                api.delete(f"/v1/capsules/{capsule['id']}")
        for capsule in api.get("/v1/capsules").json():
            wait_status(api, capsule["id"], "stopped", "error", "missing", within=120)


def _count_requests(ndjson: Path) -> int:
    """Interactions recorded in schemathesis' event log (one per request sent)."""
    return sum(json.dumps(json.loads(line)).count('"response"') for line in ndjson.read_text().splitlines())
