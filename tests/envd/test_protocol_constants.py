"""envd's port is defined once (`envd/protocol.py`, read by the host side through `wire.envd`);
programs that ship alone into capsules and cannot import the platform keep their own copy of it,
which must agree."""

from __future__ import annotations

import re
from pathlib import Path

from wrenn_platform.wire import envd as wire_envd

SRC = Path(__file__).resolve().parents[2] / "src" / "wrenn_platform"


def test_the_code_interpreter_asks_envd_on_envds_port() -> None:
    source = (SRC / "code_interpreter" / "server.py").read_text()
    default = re.search(r'"WRENN_ENVD_URL", "http://127\.0\.0\.1:(\d+)"', source)
    assert default is not None, "code_interpreter/server.py no longer names envd's URL as expected"
    assert int(default.group(1)) == wire_envd.PORT
