"""The published `wrenn` client (PyPI, pinned) in a virtual environment of its own, and a runner
for client scripts in it.

The client cannot be imported here: the name `wrenn` belongs to it, and it lives in another
interpreter's site-packages. A test hands it a script; the script drives the server the way a user
would and prints what it saw as one JSON line, which the test asserts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENT_REQUIREMENT = "wrenn==0.3.0"
# 0.3.0 declares Python >= 3.12 but runs on 3.11 (it only uses what 3.11 has): the project's interpreter.
PIP_INSTALL = ["install", "-q", "--ignore-requires-python"]
CACHE_DIR = Path(os.environ.get("WRENN_CACHE_DIR", "/var/cache/wrenn"))

# Every script starts with this: `emit(**observations)` prints the one JSON line the test reads.
PRELUDE = """\
import json as _json


def emit(**observations):
    print("\\n" + _json.dumps(observations, default=str))

"""


def client_venv_dir(cache_dir: Path = CACHE_DIR, requirements: tuple[str, ...] = (CLIENT_REQUIREMENT,)) -> Path:
    return cache_dir / "clients" / "+".join(r.replace("==", "-") for r in requirements)


def ensure_client_venv(cache_dir: Path = CACHE_DIR, requirements: tuple[str, ...] = (CLIENT_REQUIREMENT,)) -> Path:
    """The venv's python with the pinned `requirements` (the published `wrenn` client by default),
    made once (under a lock, built aside and renamed into place)."""
    venv = client_venv_dir(cache_dir, requirements)
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        building = venv.parent / f".{venv.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        pip = subprocess.run([str(building / "bin" / "python"), "-m", "pip", *PIP_INSTALL, *requirements],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} failed:\n{pip.stdout}\n{pip.stderr}")
        # Only `bin/python -m ...` is used, which does not care where the venv was made.
        building.rename(venv)
        stamp.write_text("\n".join(requirements) + "\n")
        return python


class ClientScriptFailed(AssertionError):
    pass


@dataclass(frozen=True)
class PublishedClient:
    """Runs scripts with the published client against one server, as one API key."""

    python: Path
    base_url: str
    api_key: str

    def env(self) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items() if not name.startswith("WRENN_")}
        return {**inherited, "WRENN_BASE_URL": self.base_url, "WRENN_API_KEY": self.api_key}

    def run(self, script: str, timeout: float = 180, prelude: str = "") -> dict[str, Any]:
        """Run `script` (dedented, after `prelude`) in the client's venv; return what it `emit`ted."""
        stdout = self.output_of(PRELUDE + prelude + textwrap.dedent(script), timeout)
        last = stdout.rstrip("\n").rsplit("\n", 1)[-1]
        try:
            observed = json.loads(last)
        except json.JSONDecodeError as exc:
            raise ClientScriptFailed(f"client script printed no observations:\n{stdout[-2000:]}") from exc
        assert isinstance(observed, dict)
        return observed

    def run_in(self, capsule_id: str, script: str, timeout: float = 180, prelude: str = "") -> dict[str, Any]:
        """`run` with `capsule` bound to the existing capsule `capsule_id` (`Capsule.connect`)."""
        connect = f"from wrenn import Capsule\ncapsule = Capsule.connect({capsule_id!r})\n"
        return self.run(script, timeout, prelude=connect + prelude)

    def output_of(self, source: str, timeout: float = 180) -> str:
        """What the Python program `source`, run in the client's venv, prints (it must exit 0)."""
        proc = subprocess.Popen([str(self.python), "-c", source], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise ClientScriptFailed(f"client script still running after {timeout} s:\n{stderr[-4000:]}\n"
                                     f"stdout:\n{stdout[-2000:]}") from None
        if proc.returncode != 0:
            raise ClientScriptFailed(f"client script exited {proc.returncode}:\n{stderr[-4000:]}\n"
                                     f"stdout:\n{stdout[-2000:]}")
        return stdout

    @contextlib.contextmanager
    def popen(self, script: str) -> Iterator[subprocess.Popen[str]]:
        """A client script left running (an event stream), killed on exit."""
        proc = subprocess.Popen([str(self.python), "-u", "-c", PRELUDE + textwrap.dedent(script)], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
