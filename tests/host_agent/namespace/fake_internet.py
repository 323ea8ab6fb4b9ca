"""A stand-in for the internet in its own netns (the machine has none, and tests must only send
traffic to addresses on this machine): a TCP server that answers with the peer's address, and a
DNS server that answers A queries for `*.test` with its own address."""

from __future__ import annotations

import socket
import struct
import sys
import threading


def tcp_server(host: str, port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(16)
    while True:
        conn, peer = srv.accept()
        conn.sendall(f"peer={peer[0]}\n".encode())
        conn.close()


def dns_server(host: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 53))
    answer_ip = socket.inet_aton(host)
    while True:
        query, peer = sock.recvfrom(512)
        (qid,) = struct.unpack("!H", query[:2])
        end = 12
        while query[end] != 0:
            end += query[end] + 1
        question = query[12 : end + 5]
        qtype = struct.unpack("!H", query[end + 1 : end + 3])[0]
        name = query[12:end].lower()
        ok = name.endswith(b"\x04test") and qtype == 1
        header = struct.pack("!HHHHHH", qid, 0x8180 if ok else 0x8183, 1, 1 if ok else 0, 0, 0)
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + answer_ip if ok else b""
        sock.sendto(header + question + record, peer)


if __name__ == "__main__":
    address, port = sys.argv[1], int(sys.argv[2])
    threading.Thread(target=dns_server, args=(address,), daemon=True).start()
    print("ready", flush=True)
    tcp_server(address, port)
