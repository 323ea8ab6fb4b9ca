"""`wrenn agent`: the host agent daemon, in the foreground."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from wrenn_platform.host_agent.runtimes import RUNTIME_CHOICES, refuse_unusable_paths
from wrenn_platform.host_agent.templates import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR

if TYPE_CHECKING:
    import uvicorn


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"expected HOST:PORT, got {listen!r}", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


def agent(
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir", help="Capsule state, records, snapshots."),
    cache_dir: Path = typer.Option(DEFAULT_CACHE_DIR, "--cache-dir", help="Built templates, kernels, images."),
    listen: str = typer.Option(
        "127.0.0.1:7070", "--listen",
        help="HOST:PORT for the internal API. Loopback or a management network only: never a tenant's door."),
    runtime: str = typer.Option("auto", "--runtime", help=f"Capsule runtime: {' | '.join(RUNTIME_CHOICES)}."),
    secret_file: Path | None = typer.Option(
        None, "--secret-file",
        help="Without a control plane: the host's shared secret (>= 32 bytes) that signs tokens both ways; "
             "created (0600) if missing."),
    control_plane: list[str] | None = typer.Option(
        None, "--control-plane", envvar="WRENN_CONTROL_PLANE",
        help="Join this control plane (URL of `wrenn server`): register, heartbeat, report events. The host's "
             "key is derived from the registration token. Repeat it (or separate URLs with commas) to name "
             "several replicas: the agent moves to the next when the one it uses fails."),
    registration_token: str | None = typer.Option(
        None, "--registration-token", envvar="WRENN_REGISTRATION_TOKEN",
        help="One-time token from POST /v1/hosts (needed the first time only; the identity is kept in DATA_DIR)."),
    advertise: str | None = typer.Option(
        None, "--advertise", help="HOST:PORT the control plane reaches this agent at (default: --listen)."),
    heartbeat: float = typer.Option(5.0, "--heartbeat-seconds", help="Heartbeat interval when joined."),
    host_id: str = typer.Option(None, "--host-id", help="This host's id (default: persisted in DATA_DIR)."),
    min_timeout: int = typer.Option(60, "--min-timeout", help="Positive capsule TTLs below this are clamped up."),
    warm_pool_size: int = typer.Option(0, "--warm-pool-size", envvar="WRENN_WARM_POOL_SIZE", min=0,
                                       help="Capsules kept started for the default create request; 0: none."),
    warm_pools: str = typer.Option("", "--warm-pools", envvar="WRENN_WARM_POOLS",
                                   help="More pools: template:vcpus:memory_mb:disk_size_mb=N, comma separated."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Run the host agent daemon: owns this host's capsules; serves the control plane's internal API."""
    import uvicorn

    from wrenn_platform.agent_link.auth import HostKey, create_secret_file, load_secret
    from wrenn_platform.host_agent.api import create_app
    from wrenn_platform.host_agent.control_planes import parse_urls
    from wrenn_platform.host_agent.daemon import AgentConfig, build_agent
    from wrenn_platform.host_agent.joined import JoinedAgent
    from wrenn_platform.host_agent.warm_pool import PoolSettings
    from wrenn_platform.wire.warm_pool import PoolSpecError, pool_sizes

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if runtime not in RUNTIME_CHOICES:
        raise typer.BadParameter(f"one of {', '.join(RUNTIME_CHOICES)}", param_hint="--runtime")
    try:
        pools = PoolSettings(sizes=pool_sizes(warm_pool_size, warm_pools))
    except PoolSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--warm-pools") from None
    refuse_unusable_paths("wrenn agent", runtime, data_dir, cache_dir)
    host, port = _split_listen(listen)
    joined: JoinedAgent | None = None
    if control_plane:
        try:
            urls = parse_urls(control_plane)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--control-plane") from None
        data_dir.mkdir(parents=True, exist_ok=True)
        joined = asyncio.run(JoinedAgent.join(urls, data_dir, registration_token, advertise or listen))
        secret, host_id = joined.key, joined.host_id
    elif secret_file is not None:
        secret = load_secret(secret_file) if secret_file.exists() else create_secret_file(secret_file)
    else:
        raise typer.BadParameter("either --control-plane (to join) or --secret-file", param_hint="--secret-file")
    config = AgentConfig(data_dir=data_dir, cache_dir=cache_dir, runtime=runtime, host_id=host_id,
                         min_timeout_sec=min_timeout, warm_pool=pools)
    host_agent = build_agent(config)
    key = HostKey(host_agent.settings.host_id, secret)

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        await host_agent.start()
        logging.getLogger("wrenn.agent").info(
            "host agent %s listening on %s:%s (runtime %s, %d capsules)",
            key.host_id, host, port, host_agent.runtime.name, len(host_agent.list_capsules()))
        try:
            if joined is None:
                yield
            else:
                async with joined.running(host_agent, heartbeat):
                    yield
        finally:
            await host_agent.close()

    app = create_app(host_agent, key, lifespan=lifespan)
    serving = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", ws="websockets-sansio")
    asyncio.run(uvicorn.Server(serving).serve(sockets=[listening_socket(serving)]))


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The server's socket, listening before its lifespan starts. A joined agent's heartbeats (begun
    in the lifespan) make its host placeable at once, and uvicorn binds only after the lifespan: a
    create placed in between was refused ("All connection attempts failed") and the capsule lost.
    Connections made meanwhile wait in the backlog until the server accepts them."""
    sock = config.bind_socket()
    sock.listen(config.backlog)
    return sock
