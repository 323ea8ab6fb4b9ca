"""A web server the proxy tests run inside a capsule (the capsule's python3, stdlib only).

    python3 capsule_app.py PORT

HTTP/1.1 with keep-alive. GET /headers → the request's headers as JSON; GET /big?mib=N → N MiB
(Content-Length); GET /sse?n=N&gap=S → N Server-Sent Events S seconds apart (chunked);
POST /digest → {"length", "sha256"} of the request body (Content-Length or chunked);
GET /ws → a WebSocket that echoes every message; anything else → "hello from the capsule".
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import struct
import sys
import time
from urllib.parse import parse_qs, urlsplit

_BLOCK = bytes(range(256)) * 4096  # 1 MiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are separate writes: no 40 ms delayed-ACK stall between them

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/headers":
            self._reply(json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(), "application/json")
        elif url.path == "/big":
            size = int(query.get("mib", "1")) * len(_BLOCK)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for _ in range(size // len(_BLOCK)):
                self.wfile.write(_BLOCK)
        elif url.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(query.get("n", "3"))):
                event = f"data: event {i} at {time.time():.3f}\n\n".encode()
                self.wfile.write(b"%x\r\n%b\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(float(query.get("gap", "0.3")))
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/ws":
            self._websocket()
        else:
            self._reply(b"hello from the capsule")

    def do_POST(self) -> None:
        digest, length = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunk = self.rfile.read(size)
                digest.update(chunk)
                length += len(chunk)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                digest.update(chunk)
                length += len(chunk)
                left -= len(chunk)
        self._reply(json.dumps({"length": length, "sha256": digest.hexdigest()}).encode(), "application/json")

    def _websocket(self) -> None:
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        if "echo" in self.headers.get("Sec-WebSocket-Protocol", ""):
            self.send_header("Sec-WebSocket-Protocol", "echo")
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self._frame(8, data[:2])
                return
            self._frame(10 if opcode == 9 else opcode, data)

    def _frame(self, opcode: int, data: bytes) -> None:
        n = len(data)
        size = bytes([127]) + struct.pack("!Q", n)
        if n < 65536:
            size = bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
        self.wfile.write(bytes([0x80 | opcode]) + size + data)
        self.wfile.flush()


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
