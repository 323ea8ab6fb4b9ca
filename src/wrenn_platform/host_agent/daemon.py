"""Assembling a host agent from configuration: runtime, network slots, template store, identity.

Used by `wrenn agent` (the daemon, behind `api.create_app`) and by the embedded `wrenn server`
(in-process, behind `local_client.LocalAgentClient`):

    agent = build_agent(AgentConfig(data_dir=Path("/var/lib/wrenn"), runtime="auto"))
    await agent.start()          # re-adopts capsules left by a previous process
    client = LocalAgentClient(agent)
    ...
    await agent.close()          # capsules keep running; the next start re-adopts them

Joining a remote control plane (registration token → host JWT, heartbeats, events, failover
over several control-plane URLs) is `joined.py`, on top of what is built here.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from wrenn_platform.host_agent.runtimes import build_runtime, resolve_runtime_name
from wrenn_platform.host_agent.service import AgentSettings, HostAgent
from wrenn_platform.host_agent.slot_pool import LeasedSlots
from wrenn_platform.host_agent.templates import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, TemplateStore
from wrenn_platform.host_agent.warm_pool import PoolSettings

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    cache_dir: Path = DEFAULT_CACHE_DIR
    runtime: str = "auto"
    host_id: str | None = None  # default: persisted in <data_dir>/agent/host_id, created once
    min_timeout_sec: int = 60
    lease_dir: Path | None = None  # default: the network module's (/run/wrenn/slots)
    warm_pool: PoolSettings = field(default_factory=PoolSettings)  # default: no pool


def load_or_create_host_id(data_dir: Path) -> str:
    path = data_dir / "agent" / "host_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    host_id = f"host-{secrets.token_hex(8)}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(host_id + "\n")
    os.replace(tmp, path)
    return host_id


def build_agent(config: AgentConfig) -> HostAgent:
    runtime_name, why = resolve_runtime_name(config.runtime)
    log.info("host agent runtime: %s (%s)", runtime_name, why)
    if runtime_name == "namespace":
        log.warning("namespace runtime: capsules share the host kernel (weaker isolation than a VM)")
    host_id = config.host_id or load_or_create_host_id(config.data_dir)
    runtime = build_runtime(runtime_name, config.data_dir, config.cache_dir)
    slots = (LeasedSlots(str(config.data_dir)) if config.lease_dir is None
             else LeasedSlots(str(config.data_dir), config.lease_dir))
    settings = AgentSettings(host_id=host_id, data_dir=config.data_dir, min_timeout_sec=config.min_timeout_sec,
                             warm_pool=config.warm_pool)
    return HostAgent(settings, runtime, slots, TemplateStore(config.data_dir, config.cache_dir))

