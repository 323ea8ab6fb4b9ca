"""`capsule.commands` — foreground, background, streaming, list, kill, connect — and `capsule.git`,
from the published client, in one capsule the module shares (reached again by `Capsule.connect`)."""

from __future__ import annotations

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root


def test_foreground_command_output_exit_code_env_and_cwd(client: PublishedClient, capsule_id: str) -> None:
    seen = client.run_in(capsule_id, """
        ok = capsule.commands.run("echo out; echo err >&2; exit 3")
        env = capsule.commands.run("echo $GREETING; pwd", envs={"GREETING": "hi"}, cwd="/tmp")
        binary = capsule.commands.run("printf '\\\\377\\\\376'")
        emit(stdout=ok.stdout, stderr=ok.stderr, exit_code=ok.exit_code, duration=ok.duration_ms,
             env=env.stdout, binary=binary.stdout)
    """)
    assert (seen["stdout"], seen["stderr"], seen["exit_code"]) == ("out\n", "err\n", 3)
    assert isinstance(seen["duration"], int)
    assert seen["env"] == "hi\n/tmp\n"
    assert seen["binary"] == "\ufffd\ufffd"  # base64 on the wire, decoded by the client


def test_commands_run_as_root_by_default(client: PublishedClient, capsule_id: str) -> None:
    """The upstream envd's default user, which the client's git helpers and its users assume (/root)."""
    seen = client.run_in(capsule_id, """
        emit(whoami=capsule.commands.run("whoami; echo $HOME; cd && pwd").stdout)
    """)
    assert seen["whoami"] == "root\n/root\n/root\n"


def test_foreground_timeout(client: PublishedClient, capsule_id: str) -> None:
    seen = client.run_in(capsule_id, """
        import time
        started = time.monotonic()
        result = capsule.commands.run("sleep 30", timeout=1)
        emit(exit_code=result.exit_code, took=time.monotonic() - started)
    """)
    assert seen["exit_code"] != 0
    assert seen["took"] < 20


def test_background_list_connect_and_kill(client: PublishedClient, capsule_id: str) -> None:
    seen = client.run_in(capsule_id, """
        handle = capsule.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.3; done", background=True,
                                      tag="ticker")
        listed = {p.pid: p.tag for p in capsule.commands.list()}
        events = [(e.type, getattr(e, "data", None), getattr(e, "exit_code", None))
                  for e in capsule.commands.connect(handle.pid)]
        sleeper = capsule.commands.run("sleep 300", background=True)
        before_kill = [p.pid for p in capsule.commands.list()]
        capsule.commands.kill(sleeper.pid)
        import time
        deadline = time.monotonic() + 20
        while sleeper.pid in [p.pid for p in capsule.commands.list()] and time.monotonic() < deadline:
            time.sleep(0.2)
        after_kill = [p.pid for p in capsule.commands.list()]
        emit(pid=handle.pid, tag=handle.tag, capsule=handle.capsule_id, listed=listed, events=events,
             sleeper=sleeper.pid, before_kill=before_kill, after_kill=after_kill)
    """)
    assert seen["pid"] > 0 and seen["tag"] == "ticker" and seen["capsule"] == capsule_id
    assert seen["listed"].get(str(seen["pid"])) == "ticker"
    stdout = "".join(data for kind, data, _ in seen["events"] if kind == "stdout")
    assert "tick 3\n" in stdout
    assert seen["events"][-1][0] == "exit" and seen["events"][-1][2] == 0
    assert seen["sleeper"] in seen["before_kill"]
    assert seen["sleeper"] not in seen["after_kill"]


def test_streaming_command(client: PublishedClient, capsule_id: str) -> None:
    seen = client.run_in(capsule_id, """
        shell = [(e.type, getattr(e, "data", None), getattr(e, "exit_code", None), getattr(e, "pid", None))
                 for e in capsule.commands.stream("echo one; echo two >&2; exit 4")]
        argv = [(e.type, getattr(e, "data", None)) for e in capsule.commands.stream("/bin/echo", ["a", "b"])]
        emit(shell=shell, argv=argv)
    """)
    kinds = [event[0] for event in seen["shell"]]
    assert kinds[0] == "start" and seen["shell"][0][3] > 0
    assert "".join(e[1] for e in seen["shell"] if e[0] == "stdout") == "one\n"
    assert "".join(e[1] for e in seen["shell"] if e[0] == "stderr") == "two\n"
    assert seen["shell"][-1][0] == "exit" and seen["shell"][-1][2] == 4
    assert "".join(data for kind, data in seen["argv"] if kind == "stdout") == "a b\n"


def test_git_helpers(client: PublishedClient, capsule_id: str) -> None:
    seen = client.run_in(capsule_id, """
        git = capsule.git
        git.configure_user("Compat Test", "compat@example.com")
        git.init("/root/repo")
        capsule.files.write("/root/repo/README.md", "hello\\n")
        before = git.status(cwd="/root/repo")
        git.add(cwd="/root/repo")
        git.commit("first", cwd="/root/repo")
        committed = git.status(cwd="/root/repo")
        git.create_branch("feature", cwd="/root/repo")
        branches = git.branches(cwd="/root/repo")
        git.checkout_branch("main", cwd="/root/repo")
        git.delete_branch("feature", cwd="/root/repo")
        git.remote_add("origin", "https://example.com/repo.git", cwd="/root/repo")
        git.init("/root/bare.git", bare=True)
        git.set_config("remote.origin.url", "/root/bare.git", cwd="/root/repo")
        git.push("origin", "main", set_upstream=True, cwd="/root/repo")
        git.clone("/root/bare.git", "/root/clone")
        capsule.files.write("/root/clone/later.txt", "later\\n")
        git.add(["later.txt"], cwd="/root/clone")
        git.commit("later", cwd="/root/clone")
        git.push(cwd="/root/clone")
        git.pull("origin", "main", ff_only=True, cwd="/root/repo")
        pulled = capsule.files.read("/root/repo/later.txt")
        capsule.files.write("/root/repo/README.md", "changed\\n")
        git.restore(["README.md"], worktree=True, cwd="/root/repo")
        restored = capsule.files.read("/root/repo/README.md")
        git.reset(mode="hard", ref="HEAD~1", cwd="/root/repo")
        reset_gone = capsule.files.exists("/root/repo/later.txt")
        git.pull(cwd="/root/repo")
        after = git.status(cwd="/root/repo")
        emit(initial_branch=committed.branch, untracked=before.has_untracked,
             branches=sorted((b.name, b.is_current) for b in branches),
             name=git.get_config("user.name", scope="global"), remote=git.remote_get("origin", cwd="/root/repo"),
             clean=after.is_clean, upstream=after.upstream,
             cloned=capsule.files.read("/root/clone/README.md"), pulled=pulled, restored=restored,
             reset_gone=reset_gone)
    """)
    assert seen["initial_branch"] == "main"  # issue 12, item 5: the template's git starts on `main`
    assert seen["untracked"] is True
    assert seen["branches"] == [["feature", True], ["main", False]]
    assert seen["name"] == "Compat Test"
    assert seen["remote"] == "/root/bare.git"
    assert seen["clean"] is True and seen["upstream"] == "origin/main"
    assert seen["cloned"] == "hello\n"
    assert (seen["pulled"], seen["restored"], seen["reset_gone"]) == ("later\n", "hello\n", False)
