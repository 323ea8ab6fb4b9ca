"""`capsule.pty()` / `pty_connect(tag)` — start, input, resize, reconnect by tag, kill — from the
published client. The client sends keystrokes as binary WebSocket frames (raw bytes) and its
control messages (start, connect, resize, kill) as JSON text frames; output arrives as bytes."""

from __future__ import annotations

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root

# Reads the terminal's events until `needle` has appeared in its output, as a user's loop would.
READ_UNTIL = """
def read_until(term, needle):
    seen = b""
    for event in term:
        if event.type == "output":
            if not isinstance(event.data, bytes):
                raise AssertionError(f"an output event without bytes: {event!r} (after {seen!r})")
            seen += event.data
            if needle in seen:
                return seen
        elif event.type in ("exit", "error"):
            raise AssertionError(f"terminal ended early: {event!r}, output {seen!r}")
    raise AssertionError(f"stream closed before {needle!r}: {seen!r}")
"""


def in_capsule(client: PublishedClient, capsule_id: str, script: str) -> dict:
    return client.run_in(capsule_id, script, timeout=120, prelude=READ_UNTIL)


def test_start_reports_pid_and_tag_and_kill_ends_it(client: PublishedClient, capsule_id: str) -> None:
    seen = in_capsule(client, capsule_id, """
        with capsule.pty(cmd="/bin/sleep", args=["300"], cols=100, rows=30) as term:
            first = next(iter(term))
            term.kill()
            rest = [(event.type, event.exit_code) for event in term]
        emit(first=first.type, pid=term.pid, tag=term.tag, rest=rest)
    """)
    assert seen["first"] == "started"
    assert seen["pid"] > 0 and seen["tag"]
    assert seen["rest"][-1][0] == "exit" and seen["rest"][-1][1] != 0


def test_keystrokes_resize_and_exit(client: PublishedClient, capsule_id: str) -> None:
    seen = in_capsule(client, capsule_id, """
        with capsule.pty(cols=80, rows=24) as term:
            term.write(b"echo $((6 * 7))-done\\n")
            answer = read_until(term, b"42-done")
            term.write(b"stty size\\n")
            before = read_until(term, b"24 80")
            term.resize(cols=132, rows=43)
            term.write(b"stty size\\n")
            after = read_until(term, b"43 132")
            term.write(b"exit 5\\n")
            codes = [event.exit_code for event in term if event.type == "exit"]
        emit(codes=codes)
    """)
    assert seen == {"codes": [5]}


def test_reconnect_by_tag_after_the_connection_dropped(client: PublishedClient, capsule_id: str) -> None:
    # The first client process dies with its terminal open (no kill sent): the shell lives on.
    first = in_capsule(client, capsule_id, """
        import os, sys
        session = capsule.pty()  # entered, never left: the connection is cut when the process dies
        term = session.__enter__()
        term.write(b"echo kept > /tmp/pty-state; echo written\\n")
        read_until(term, b"written")
        emit(tag=term.tag, pid=term.pid)
        sys.stdout.flush()
        os._exit(0)
    """)
    seen = in_capsule(client, capsule_id, f"""
        with capsule.pty_connect({first["tag"]!r}) as term:
            term.write(b"echo again-$(cat /tmp/pty-state)\\n")
            output = read_until(term, b"again-kept")
            term.kill()
            ends = [event.type for event in term]
        emit(ends=ends)
    """)
    assert seen["ends"][-1] == "exit"
