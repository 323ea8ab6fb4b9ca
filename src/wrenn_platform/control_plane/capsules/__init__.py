"""Capsules on the control plane: records, the lifecycle state machine, scheduling onto hosts,
the calls into host agents (`agent_link.client.AgentClient`), reconciliation and usage."""
