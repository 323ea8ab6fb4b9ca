"""E2B's code-interpreter protocol, served inside `code-interpreter-v1` capsules on port 49999
(`server.py`, run by the template's start command with the guest's Python, Jupyter Server's
Tornado and the template's Jupyter kernels). Nothing here is imported by the platform itself: the
recipe copies `server.py` into the template (`host_agent/images/recipe.py`)."""

from pathlib import Path

SERVER_SOURCE = Path(__file__).with_name("server.py")
PORT = 49999
