"""The agent link's own error: the agent could not be reached at all. The errors an agent answers
with are the agent wire's (`wire/agent.py`)."""

from __future__ import annotations

from wrenn_platform.wire.agent import AgentError


class AgentUnreachable(AgentError):
    """The agent could not be reached (connection refused, timed out, dropped): nothing it said, so
    the control plane may retry later rather than record a failure."""

    status = 502
    code = "agent_unreachable"
