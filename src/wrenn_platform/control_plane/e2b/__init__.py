"""The E2B-compatible front door: E2B's REST API (`routes.py`) over the same capsules, teams and
API keys, the absolute sandbox lifetime E2B's `timeout` means (`lifetime.py`), and the routing of
envd requests by E2B's `E2b-Sandbox-Id` / `E2b-Sandbox-Port` headers (`routing.py`). User docs:
docs/e2b.md."""
