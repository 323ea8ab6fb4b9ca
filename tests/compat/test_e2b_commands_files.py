"""E2B's `sandbox.commands`, `sandbox.files` and `sandbox.pty` from the published `e2b` client
(synchronous), through `E2B_SANDBOX_URL`: everything reaches the sandbox's envd through wrenn
server, routed by E2B's headers."""

from __future__ import annotations

import pytest

from .e2b_client import E2bClient

pytestmark = pytest.mark.root


def test_commands(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import time
        from e2b import Sandbox, CommandExitException

        with Sandbox.create(timeout=300, envs={"FROM_CREATE": "c"}) as sbx:
            ran = sbx.commands.run("echo $FROM_CREATE $FROM_RUN; whoami; pwd; echo err >&2",
                                   envs={"FROM_RUN": "r"})
            as_root = sbx.commands.run("whoami", user="root", cwd="/tmp").stdout
            try:
                sbx.commands.run("exit 3")
                failed = None
            except CommandExitException as exc:
                failed = exc.exit_code
            streamed = []
            sbx.commands.run("for i in 1 2 3; do echo $i; done", on_stdout=streamed.append)
            background = sbx.commands.run("sleep 600", background=True)
            listed = [p.pid for p in sbx.commands.list()]
            cat = sbx.commands.run("cat", background=True, stdin=True)
            sbx.commands.send_stdin(cat.pid, "typed\\n")
            sbx.commands.close_stdin(cat.pid)
            cat_out = cat.wait().stdout
            killed = sbx.commands.kill(background.pid)
            killed_again = sbx.commands.kill(background.pid)
            ticker = sbx.commands.run("for i in $(seq 1 50); do echo tick; sleep 0.1; done", background=True)
            joined = sbx.commands.connect(ticker.pid).wait()
            emit(stdout=ran.stdout, stderr=ran.stderr, exit=ran.exit_code, as_root=as_root, failed=failed,
                 streamed="".join(streamed), background=background.pid, listed=listed, cat=cat_out,
                 killed=killed, killed_again=killed_again, joined=joined.stdout.count("tick"),
                 envs=sbx.commands.run("env").stdout.count("FROM_CREATE=c"))
    """)
    assert seen["stdout"] == "c r\nuser\n/home/user\n" and seen["stderr"] == "err\n" and seen["exit"] == 0
    assert seen["as_root"] == "root\n" and seen["failed"] == 3
    assert seen["streamed"] == "1\n2\n3\n"
    assert seen["background"] in seen["listed"]
    assert seen["cat"] == "typed\n"
    assert (seen["killed"], seen["killed_again"]) == (True, False)
    assert seen["joined"] == 50 and seen["envs"] == 1


def test_files(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import hashlib, os, time
        import httpx
        from e2b import Sandbox, FileType
        from e2b.exceptions import NotFoundException

        with Sandbox.create(timeout=300) as sbx:
            sbx.files.write("notes/a.txt", "alpha")  # relative: from the user's home
            sbx.files.write("/home/user/notes/bin.dat", b"\\x00\\xffbytes")
            text = sbx.files.read("/home/user/notes/a.txt")
            raw = bytes(sbx.files.read("/home/user/notes/bin.dat", format="bytes"))
            made = sbx.files.make_dir("/home/user/notes/deep/er")
            made_again = sbx.files.make_dir("/home/user/notes/deep/er")
            shallow = sorted(e.name for e in sbx.files.list("/home/user/notes"))
            deep = sorted(e.path for e in sbx.files.list("/home/user/notes", depth=3))
            info = sbx.files.get_info("/home/user/notes/a.txt")
            moved = sbx.files.rename("/home/user/notes/a.txt", "/home/user/notes/b.txt")
            exists = (sbx.files.exists("/home/user/notes/a.txt"), sbx.files.exists("/home/user/notes/b.txt"))
            sbx.files.remove("/home/user/notes/deep")
            try:
                sbx.files.read("/home/user/notes/nope")
                missing = None
            except NotFoundException as exc:
                missing = type(exc).__name__

            blob = os.urandom(24 << 20)
            sbx.files.write("/home/user/big.bin", blob)
            big = hashlib.sha256(bytes(sbx.files.read("/home/user/big.bin", format="bytes"))).hexdigest()

            tagged = sbx.files.write("/home/user/tagged.txt", "t", metadata={"Owner": "alice"})
            tagged_info = sbx.files.get_info("/home/user/tagged.txt")

            watch = sbx.files.watch_dir("/home/user/notes", recursive=True, include_entry=True)
            sbx.files.write("/home/user/notes/watched.txt", "w")
            sbx.commands.run("mkdir -p /home/user/notes/sub && touch /home/user/notes/sub/x")
            time.sleep(0.3)
            new_events = watch.get_new_events()
            events = [(e.name, e.type.value) for e in new_events]
            entry_sizes = {e.name: e.entry.size for e in new_events if e.entry is not None}
            watch.stop()

            headers = {"E2b-Sandbox-Id": sbx.sandbox_id}  # E2B_SANDBOX_URL routes by it
            down = httpx.get(sbx.download_url("/home/user/notes/b.txt", use_signature_expiration=60), headers=headers)
            up = httpx.post(sbx.upload_url("/home/user/up.txt", use_signature_expiration=60), headers=headers,
                            files={"file": ("up.txt", b"uploaded")})
            unsigned = httpx.get(os.environ["E2B_SANDBOX_URL"] + "/files?path=/home/user/notes/b.txt",
                                 headers=headers)
            emit(text=text, raw=raw.hex(), made=made, made_again=made_again, shallow=shallow, deep=deep,
                 info=(info.name, info.type.value, info.size, info.path), moved=moved.path, exists=exists,
                 missing=missing, big=big == hashlib.sha256(blob).hexdigest(), events=events,
                 down=(down.status_code, down.text), up=up.status_code, uploaded=sbx.files.read("/home/user/up.txt"),
                 unsigned=unsigned.status_code, tagged=tagged.metadata, tagged_info=tagged_info.metadata,
                 entry_sizes=entry_sizes)
    """, timeout=300)
    assert seen["text"] == "alpha" and seen["raw"] == "00ff6279746573"
    assert (seen["made"], seen["made_again"]) == (True, False)
    assert seen["shallow"] == ["a.txt", "bin.dat", "deep"]
    assert "/home/user/notes/deep/er" in seen["deep"] and "/home/user/notes/a.txt" in seen["deep"]
    assert seen["info"] == ["a.txt", "file", 5, "/home/user/notes/a.txt"]
    assert seen["moved"] == "/home/user/notes/b.txt" and seen["exists"] == [False, True]
    assert seen["missing"] == "FileNotFoundException"
    assert seen["big"] is True
    assert ["watched.txt", "create"] in seen["events"] and ["sub/x", "create"] in seen["events"]
    assert seen["down"] == [200, "alpha"]
    assert seen["up"] == 200 and seen["uploaded"] == "uploaded"
    assert seen["unsigned"] == 401
    assert seen["tagged"] == {"owner": "alice"} and seen["tagged_info"] == {"owner": "alice"}  # keys lowercased
    assert seen["entry_sizes"].get("watched.txt") == 1


def test_terminal(e2b: E2bClient) -> None:
    seen = e2b.run("""
        import time
        from e2b import Sandbox, PtySize

        with Sandbox.create(timeout=300) as sbx:
            term = sbx.pty.create(PtySize(rows=24, cols=80))
            sbx.pty.send_stdin(term.pid, b"echo hello-$((40+2))\\n")
            sbx.pty.resize(term.pid, PtySize(rows=30, cols=100))
            sbx.pty.send_stdin(term.pid, b"stty size\\n")
            time.sleep(0.5)
            again = sbx.pty.connect(term.pid)  # a second stream replays the output so far
            sbx.pty.send_stdin(term.pid, b"exit\\n")
            out = []
            result = again.wait(on_pty=out.append)
            second = sbx.pty.create(PtySize(rows=24, cols=80))
            killed = sbx.pty.kill(second.pid)
            try:
                second.wait()
                killed_exit = None
            except Exception as exc:
                killed_exit = type(exc).__name__
            emit(output=b"".join(out).decode(errors="replace"), exit=result.exit_code, killed=killed,
                 killed_exit=killed_exit)
    """)
    assert "hello-42" in seen["output"] and "30 100" in seen["output"]
    assert seen["exit"] == 0
    assert seen["killed"] is True and seen["killed_exit"] == "CommandExitException"
