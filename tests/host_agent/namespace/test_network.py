"""Slots: egress NAT and DNS through a fake internet in its own netns; leases safe across
processes; the shared nftables table is idempotent and has no per-slot rules."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import multiprocessing
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from wrenn_platform.host_agent.network import allocate_slot, leases, nftables, release_slot

from .conftest import REJECTED, MakeCapsule, connect_under_this_version, nft_rules, sh

pytestmark = pytest.mark.root

# A public address, routed to a netns of this machine for the test only (the machine has no
# internet): on a device route, with no host address on that link, so it is no subnet of the host.
INTERNET_IP = "192.0.3.7"
LAN_IP = "192.168.231.7"  # a private "LAN" neighbour, only ever on a veth of this machine
LAN_HOST_SIDE_IP = "192.168.231.1"
# A LAN on public addresses: blocked only because the host has an address on it.
PUBLIC_LAN_IP = "192.0.4.7"
PUBLIC_LAN_HOST_SIDE_IP = "192.0.4.1"
PORT = 8080


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    return [f.split()[3].split("/")[0] for f in out.splitlines() if not f.split()[1].startswith("wrns")]


def read(path: str) -> str:
    return Path(path).read_text().strip()


def exists(path: str) -> bool:
    return Path(path).exists()


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


@asynccontextmanager
async def fake_host(address: str, host_side: str | None) -> AsyncIterator[str]:
    """A listener at `address` in its own netns, routed from the host through a veth: on the host's
    subnet `host_side`/24, or (None) through a device route to `address` alone."""
    suffix = uuid.uuid4().hex[:6]
    ns, host_if = f"wrntest-inet-{suffix}", f"wrnti{suffix}"
    ip("netns", "add", ns)
    proc = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", host_if, "up")
        if host_side is not None:
            ip("addr", "add", f"{host_side}/24", "dev", host_if)
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        else:
            ip("route", "add", f"{address}/32", "dev", host_if)
            ip("-n", ns, "addr", "add", f"{address}/32", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        if host_side is None:
            ip("-n", ns, "route", "add", "default", "dev", "eth0")
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            str(Path(__file__).with_name("fake_internet.py")),
            address,
            str(PORT),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)) == b"ready\n"
        yield address
    finally:
        if proc is not None:
            proc.kill()
            await proc.wait()
        deleting = await asyncio.create_subprocess_exec("ip", "netns", "del", ns)
        await deleting.wait()


@pytest.fixture
async def internet() -> AsyncIterator[str]:
    assert ipaddress.ip_address(INTERNET_IP).is_global
    async with fake_host(INTERNET_IP, None) as address:
        yield address


@pytest.fixture
async def lan_host() -> AsyncIterator[str]:
    async with fake_host(LAN_IP, LAN_HOST_SIDE_IP) as address:
        yield address


async def test_egress_is_masqueraded_and_dns_works(make_capsule: MakeCapsule, internet: str) -> None:
    capsule = await make_capsule(dns_servers=(internet,))
    code, out, err = await sh(capsule, f"curl -sS -m 5 telnet://{internet}:{PORT} </dev/null")
    assert code == 0, err
    peer = out.strip().removeprefix("peer=")
    assert peer in host_addresses(), out  # NAT: the capsule's 10.11.x.y never leaves the host
    code, out, _ = await sh(capsule, "cat /etc/resolv.conf")
    assert out == f"nameserver {internet}\n"
    code, out, _ = await sh(capsule, "getent hosts example.test")
    assert code == 0 and out.split() == [internet, "example.test"]
    code, out, _ = await sh(capsule, "getent hosts example.invalid")
    assert code != 0


async def test_private_networks_are_unreachable_but_the_host_reaches_them(
    make_capsule: MakeCapsule, lan_host: str
) -> None:
    probe = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-m", "5", f"telnet://{lan_host}:{PORT}", stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await probe.communicate()
    assert probe.returncode == 0 and out.startswith(b"peer="), "the LAN host must be up for the probe to mean anything"
    capsule = await make_capsule()
    code, out, err = await sh(capsule, f"curl -sS -m 5 telnet://{lan_host}:{PORT} </dev/null")
    assert code != 0 and "peer=" not in out
    assert "timed out" not in err  # rejected at once, not silently dropped


async def test_the_hosts_own_subnets_are_unreachable_whatever_their_range(make_capsule: MakeCapsule) -> None:
    async with fake_host(PUBLIC_LAN_IP, PUBLIC_LAN_HOST_SIDE_IP) as neighbour:
        probe = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-m", "5", f"telnet://{neighbour}:{PORT}", stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await probe.communicate()
        assert probe.returncode == 0 and out.startswith(b"peer="), "the host must reach its neighbour"
        capsule = await make_capsule()  # allocating its slot rebuilds the table with the new subnet
        assert "192.0.4.0/24" in nftables.blocked_destinations(nftables.host_networks())
        out_text = await connect_under_this_version(lambda script: sh(capsule, script), neighbour, PORT)
        assert out_text.startswith(REJECTED), out_text
        # the host's real LAN (here a documentation range, as on the machine the finding came from)
        for address in host_addresses():
            gateway = str(next(ipaddress.ip_network(f"{address}/24", strict=False).hosts()))
            out_text = await connect_under_this_version(lambda script: sh(capsule, script), gateway, 80)
            assert out_text.startswith(REJECTED), (gateway, out_text)


# IANA IPv4 special-purpose address registry (2024): (block, globally reachable).
IANA_SPECIAL_PURPOSE = [
    ("0.0.0.0/8", False), ("10.0.0.0/8", False), ("100.64.0.0/10", False), ("127.0.0.0/8", False),
    ("169.254.0.0/16", False), ("172.16.0.0/12", False), ("192.0.0.0/24", False), ("192.0.0.0/29", False),
    ("192.0.0.8/32", False), ("192.0.0.9/32", True), ("192.0.0.10/32", True), ("192.0.0.170/32", False),
    ("192.0.0.171/32", False), ("192.0.2.0/24", False), ("192.31.196.0/24", True), ("192.52.193.0/24", True),
    ("192.88.99.0/24", False), ("192.168.0.0/16", False), ("192.175.48.0/24", True), ("198.18.0.0/15", False),
    ("198.51.100.0/24", False), ("203.0.113.0/24", False), ("240.0.0.0/4", False),
    ("255.255.255.255/32", False),
]


def test_every_non_global_special_purpose_range_is_blocked() -> None:
    blocked = [ipaddress.ip_network(n) for n in nftables.blocked_destinations(())]
    for block, global_ in IANA_SPECIAL_PURPOSE:
        network = ipaddress.ip_network(block)
        covered = any(network.subnet_of(b) for b in blocked)  # type: ignore[arg-type]
        # 192.0.0.9/10 (PCP and TURN anycast) lie inside the blocked IETF /24: refused all the same
        assert covered or global_, block
    for address in ("224.0.0.251", "239.255.255.250", "10.11.3.2", "192.0.2.1", "198.19.255.1", "203.0.113.9"):
        assert any(ipaddress.ip_address(address) in b for b in blocked), address
    for address in ("1.1.1.1", "8.8.8.8", "192.0.3.7", "192.31.196.1"):
        assert not any(ipaddress.ip_address(address) in b for b in blocked), address
    # the host's own subnets join the list, merged with what covers them
    assert "192.0.4.0/24" in nftables.blocked_destinations(("192.0.4.0/24", "10.1.0.0/16"))
    assert "10.1.0.0/16" not in nftables.blocked_destinations(("10.1.0.0/16",))


def test_ruleset_allows_dns_only_to_the_hosts_resolvers() -> None:
    rules = nftables.ruleset(("10.255.255.53",))
    assert "10.0.0.0/8" in rules and "192.168.0.0/16" in rules and "169.254.0.0/16" in rules
    assert "elements = { 10.255.255.53 }" in rules and "th dport 53 accept" in rules
    assert nftables.table_version(("10.255.255.53",)) != nftables.table_version(("10.255.255.54",))


def _take(lease_dir: str, n: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    got = [leases.acquire("proc", f"h{i}", Path(lease_dir), max_slots=64).index for i in range(n)]
    queue.put(got)


def test_leases_are_exclusive_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(str(tmp_path), 12, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    indexes = [i for got in results for i in got]
    assert len(indexes) == 48 and len(set(indexes)) == 48
    with pytest.raises(leases.NoFreeSlot):
        for _ in range(17):
            leases.acquire("me", "x", tmp_path, max_slots=64)
    leases.release(indexes[0], tmp_path)
    assert leases.acquire("me", "again", tmp_path, max_slots=64).index == indexes[0]


async def test_slot_reuse_and_the_shared_table(owner: str) -> None:
    nftables.install()
    before = nft_rules()
    slot = await allocate_slot(owner, "reuse")
    assert nft_rules() == before
    assert slot.host_ip == slot.guest_ip and exists(f"/run/netns/{slot.netns}")
    await release_slot(slot)
    await release_slot(slot)  # idempotent
    assert not exists(f"/run/netns/{slot.netns}")
    assert not link_exists(slot.host_iface)
    assert leases.read(slot.index) is None
    # a released slot's address is unreachable from the host at once (never via the default route)
    with pytest.raises(OSError) as failure:
        await asyncio.wait_for(asyncio.open_connection(slot.host_ip, 49983), 2)
    assert failure.value.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
    nftables.install()  # a second agent starting: nothing changes
    assert nft_rules() == before
    assert read("/proc/sys/net/ipv4/ip_forward") == "1"
