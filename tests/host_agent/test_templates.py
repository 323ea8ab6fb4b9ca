"""The platform template `minimal`, its cached layered builder, and the template store."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from wrenn_platform.cli.template import template_app
from wrenn_platform.host_agent.images import (
    DEFAULT_ENVD_SOURCE,
    MINIMAL,
    PLATFORM_RECIPES,
    BuildError,
    assemble_template,
    base_layer_dir,
    build_template,
    prune,
    template_hash,
)
from wrenn_platform.host_agent.images.builder import _write_layer_file
from wrenn_platform.host_agent.images.debootstrap import DebootstrapProgress
from wrenn_platform.host_agent.images.recipe import CODE_INTERPRETER_SERVER, ImageFile
from wrenn_platform.host_agent.templates import (
    InvalidTemplateName,
    TemplateExists,
    TemplateInfo,
    TemplateInUse,
    TemplateNotFound,
    TemplateStore,
    read_info,
    validate_name,
    write_info,
)
from wrenn_platform.wire.start import ReadyCheck, StartCommand

ENVD_IN_IMAGE = "usr/local/lib/wrenn/envd/wrenn_envd"


def chroot(rootfs: Path, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the tree through a read-only bind mount (a tmpfs on /tmp), in a private
    mount namespace: tests never write into a template."""
    script = (
        'r="$1"; u="$2"; shift 2; mount --bind "$r" "$r" && mount -o remount,bind,ro "$r" '
        '&& mount -t tmpfs tmpfs "$r/tmp" && exec chroot ${u:+--userspec=$u} "$r" "$@"'
    )
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(rootfs), user or "", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def frozen_envd(tmp_path: Path) -> Path:
    """A private copy of envd's source, so edits made by others during the test do not matter."""
    target = tmp_path / "envd-src"
    shutil.copytree(DEFAULT_ENVD_SOURCE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


# -- the built tree -----------------------------------------------------------------------------


def test_minimal_has_the_tools(minimal_template: TemplateInfo) -> None:
    rootfs = minimal_template.rootfs
    for argv, expected in [
        (["python3", "-c", "import ssl, json, asyncio; print('py', 1 + 1)"], "py 2"),
        (["curl", "--version"], "curl 7."),
        (["git", "--version"], "git version"),
        (["sudo", "--version"], "Sudo version"),
        (["ip", "-V"], "iproute2"),
    ]:
        result = chroot(rootfs, *argv)
        assert expected in result.stdout, (argv, result.stdout, result.stderr)
    packages = ("python3", "ca-certificates", "curl", "git", "sudo", "procps", "iproute2")
    status = chroot(rootfs, "dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *packages).stdout
    assert sorted(status.split("\n")[:-1]) == sorted(f"{p} installed" for p in packages)
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
    assert chroot(rootfs, "cat", "/etc/debian_version").stdout.startswith("12.")


def test_minimal_has_user_with_passwordless_sudo(minimal_template: TemplateInfo) -> None:
    rootfs = minimal_template.rootfs
    entry = next(line for line in (rootfs / "etc/passwd").read_text().splitlines() if line.startswith("user:"))
    _, _, uid, gid, _, home, shell = entry.split(":")
    assert (uid, gid, home, shell) == ("1000", "1000", "/home/user", "/bin/bash")
    st = (rootfs / "home/user").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert chroot(rootfs, "visudo", "-c").returncode == 0
    result = chroot(rootfs, "sudo", "-n", "id", "-u", user="1000:1000")
    assert result.stdout.strip() == "0", result.stderr
    assert chroot(rootfs, "id", "-u", user="1000:1000").stdout.strip() == "1000"


def test_minimal_system_configuration(minimal_template: TemplateInfo) -> None:
    rootfs = minimal_template.rootfs
    assert (rootfs / "etc/hostname").read_text().strip() == "capsule"
    assert "127.0.0.1\tlocalhost" in (rootfs / "etc/hosts").read_text()
    resolv = rootfs / "etc/resolv.conf"
    assert resolv.is_file() and not resolv.is_symlink()  # runtimes bind-mount or rewrite it
    assert "nameserver" in resolv.read_text()
    sources = (rootfs / "etc/apt/sources.list").read_text()
    assert "deb http://deb.debian.org/debian bookworm main" in sources
    assert "bookworm-security" in sources
    assert os.access(rootfs / "usr/sbin/policy-rc.d", os.X_OK)
    # apt's package lists are in the image: `apt-get install` resolves without an update first.
    no_cache = ["-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=", "-o", "Debug::NoLocking=1"]
    result = chroot(rootfs, "apt-get", *no_cache, "install", "--simulate", "-q", "jq")
    assert result.returncode == 0 and "Inst jq" in result.stdout, result.stdout + result.stderr
    assert not list((rootfs / "var/cache/apt/archives").glob("*.deb"))


def test_minimal_has_envd_installed_and_runnable(minimal_template: TemplateInfo) -> None:
    rootfs = minimal_template.rootfs
    installed = {p.relative_to(rootfs / ENVD_IN_IMAGE) for p in (rootfs / ENVD_IN_IMAGE).rglob("*.py")}
    assert Path("__init__.py") in installed and Path("__main__.py") in installed
    launcher = rootfs / "usr/local/bin/wrenn-envd"
    assert os.access(launcher, os.X_OK)
    result = chroot(rootfs, "/usr/local/bin/wrenn-envd", "--help")
    assert result.returncode == 0, result.stderr
    assert "envd" in result.stdout
    # Every module imports with the image's own Python (stdlib only, 3.11).
    check = (
        "import importlib, pkgutil, wrenn_envd\n"
        "names = [m.name for m in pkgutil.iter_modules(wrenn_envd.__path__) if m.name != '__main__']\n"
        "[importlib.import_module('wrenn_envd.' + n) for n in names]\n"
        "print(len(names))\n"
    )
    result = chroot(rootfs, "env", "PYTHONPATH=/usr/local/lib/wrenn/envd", "python3", "-c", check)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 1


def test_envd_serves_health_from_the_template(minimal_template: TemplateInfo) -> None:
    """envd starts from the read-only tree (as PID 1 of a pid namespace) and answers /health."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = (
        'r="$1"; mount --bind "$r" "$r" && mount -o remount,bind,ro "$r" && mount -t tmpfs tmpfs "$r/tmp" '
        '&& mount -t tmpfs tmpfs "$r/run" && mount -t proc proc "$r/proc" '
        '&& exec chroot "$r" /usr/local/bin/wrenn-envd --host 127.0.0.1 --port "$2"'
    )
    argv = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
    proc = subprocess.Popen(
        [*argv, "sh", "-c", script, "sh", str(minimal_template.rootfs), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
                assert time.monotonic() < deadline, "envd did not answer within 20 s"
                time.sleep(0.05)
        assert response.status_code in (200, 204)
    finally:
        proc.kill()  # unshare ignores SIGTERM; --kill-child then ends the namespace's PID 1
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


def test_template_metadata(minimal_template: TemplateInfo) -> None:
    info = read_info(minimal_template.path)
    assert (info.name, info.type, info.platform, info.team_id) == ("minimal", "base", True, None)
    assert info.recipe_hash == minimal_template.path.name
    assert 200_000_000 < info.size_bytes < 1_000_000_000
    assert info.metadata["debian_suite"] == "bookworm"
    assert Path(info.metadata["base_layer"]) == base_layer_dir(minimal_template.path.parents[2], MINIMAL)


def test_template_tree_is_unchanged_since_its_build(minimal_template: TemplateInfo) -> None:
    """Templates are immutable: nothing (tests, runtimes) may write into a built tree."""
    marker = minimal_template.path / "template.json"
    result = subprocess.run(
        ["find", str(minimal_template.rootfs), "-xdev", "-newer", str(marker), "-print", "-quit"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "", f"written after the build: {result.stdout}"


# -- caching ------------------------------------------------------------------------------------


def test_rebuild_with_nothing_changed_is_a_fast_noop(minimal_template: TemplateInfo) -> None:
    first = build_template("minimal")
    started = time.monotonic()
    second = build_template("minimal")
    assert time.monotonic() - started < 0.5
    assert not second.built_base and not second.built_template and second.log_path is None
    assert second.info.path == first.info.path
    assert second.info.created_at == first.info.created_at


def test_recipe_hash_follows_the_recipe(tmp_path: Path) -> None:
    envd = frozen_envd(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(envd, copy)
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"junk")
    # Content-addressed: the same files elsewhere hash the same; bytecode caches do not count.
    assert template_hash(MINIMAL, copy) == template_hash(MINIMAL, envd)

    more = dataclasses.replace(MINIMAL, packages=(*MINIMAL.packages, "jq"))
    assert more.hash() != MINIMAL.hash()
    assert template_hash(more, envd) != template_hash(MINIMAL, envd)
    assert base_layer_dir(tmp_path, more) != base_layer_dir(tmp_path, MINIMAL)

    before = template_hash(MINIMAL, envd)
    (envd / "__init__.py").write_text((envd / "__init__.py").read_text() + "\n# changed\n")
    edited = template_hash(MINIMAL, envd)
    assert edited != before
    (envd / "__init__.py").chmod(0o755)
    assert template_hash(MINIMAL, envd) not in (before, edited)


def test_envd_change_redoes_only_the_envd_layer(tmp_path: Path, minimal_template: TemplateInfo) -> None:
    base_dir = Path(minimal_template.metadata["base_layer"])
    root = tmp_path / "templates" / "minimal"
    envd = frozen_envd(tmp_path)

    first, built = assemble_template(MINIMAL, base_dir, root, envd)
    assert built and (root / "current").resolve() == first.path
    again, built = assemble_template(MINIMAL, base_dir, root, envd)
    assert not built and again.path == first.path

    (envd / "marker_for_test.py").write_text("VALUE = 42\n")
    changed, built = assemble_template(MINIMAL, base_dir, root, envd)
    assert built and changed.recipe_hash != first.recipe_hash
    assert (root / "current").resolve() == changed.path
    assert (changed.rootfs / ENVD_IN_IMAGE / "marker_for_test.py").read_text() == "VALUE = 42\n"
    assert not (first.rootfs / ENVD_IN_IMAGE / "marker_for_test.py").exists()
    # The base tree is shared through hard links, not copied, and the base layer is untouched.
    python = "usr/bin/python3.11"
    assert (changed.rootfs / python).stat().st_ino == (base_dir / "rootfs" / python).stat().st_ino
    assert not (base_dir / "rootfs" / ENVD_IN_IMAGE).exists()
    assert TemplateStore(tmp_path / "data", tmp_path).resolve("minimal").path == changed.path


def test_failed_build_leaves_nothing_finished(tmp_path: Path, minimal_template: TemplateInfo) -> None:
    base_dir = Path(minimal_template.metadata["base_layer"])
    root = tmp_path / "templates" / "minimal"
    envd = frozen_envd(tmp_path)
    (envd / "broken.py").write_text("def oops(:\n")
    with pytest.raises(BuildError, match=r"broken\.py"):
        assemble_template(MINIMAL, base_dir, root, envd)
    assert list(root.iterdir()) == []
    with pytest.raises(TemplateNotFound, match="wrenn template build minimal"):
        TemplateStore(tmp_path / "data", tmp_path).resolve("minimal")


def test_failed_debootstrap_reports_its_log_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(MINIMAL, name="broken", mirror="http://mirror.invalid/debian")
    monkeypatch.setitem(PLATFORM_RECIPES, "broken", broken)
    with pytest.raises(BuildError, match="Full log: ") as caught:
        build_template("broken", tmp_path)
    assert caught.value.log_path is not None
    assert "Failed getting release file" in str(caught.value)
    assert "mirror.invalid" in caught.value.log_path.read_text()
    assert list((tmp_path / "layers" / "broken-base").iterdir()) == []
    assert not (tmp_path / "templates" / "broken").exists()


def test_prune_keeps_current_newest_and_snapshot_parents(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = cache / "templates" / "minimal"
    kept_layer = cache / "layers" / "minimal-base" / "1111111111111111"
    kept_layer.mkdir(parents=True)
    builds = []
    for i in range(4):
        build = root / f"{i:016x}"
        (build / "rootfs").mkdir(parents=True)
        info = TemplateInfo(
            name="minimal", type="base", platform=True, path=build, metadata={"base_layer": str(kept_layer)}
        )
        write_info(info)
        os.utime(build / "template.json", (1_700_000_000 + i, 1_700_000_000 + i))
        builds.append(build)
    (root / "current").symlink_to(builds[1].name)  # e.g. after a rebuild of an older recipe
    stale_layer = cache / "layers" / "minimal-base" / "0000000000000000"
    stale_layer.mkdir(parents=True)
    (cache / "logs").mkdir()
    for i in range(3):
        log = cache / "logs" / f"minimal-2026010{i}T000000-1.log"
        log.write_text("log\n")
        os.utime(log, (1_700_000_000 + i, 1_700_000_000 + i))

    removed = prune("minimal", cache, keep=1, referenced=[builds[0]], keep_logs=1)

    old_logs = {cache / "logs" / f"minimal-2026010{i}T000000-1.log" for i in range(2)}
    assert set(removed) == {builds[2], stale_layer, *old_logs}
    assert [b.exists() for b in builds] == [True, True, False, True]  # parent, current, -, newest
    assert (root / "current").resolve() == builds[1]
    assert len(list((cache / "logs").glob("*.log"))) == 1
    assert kept_layer.exists()


def test_debootstrap_output_becomes_phases_and_steps() -> None:
    events: list[tuple[str, object]] = []

    class Recorder:
        def phase(self, title: str, total: int | None = None) -> None:
            events.append(("phase", (title, total)))

        def step(self, detail: str = "") -> None:
            events.append(("step", detail))

        def note(self, message: str) -> None:
            pass

    progress = DebootstrapProgress(Recorder())
    for line in [
        "I: Retrieving InRelease",
        "I: Retrieving libc6 2.36-9+deb12u10",
        "I: Validating libc6 2.36-9+deb12u10",
        "I: Retrieving python3 3.11.2-1+b1",
        "I: Extracting libc6...",
        "I: Unpacking required packages...",
        "I: Unpacking libc6...",
        "I: Unpacking the base system...",
        "I: Unpacking python3...",
        "some other output",
    ]:
        progress.feed(line)
    assert events == [
        ("phase", ("reading the archive index", None)),
        ("phase", ("downloading packages", None)),
        ("step", "libc6"),
        ("step", "python3"),
        ("phase", ("extracting required packages", None)),
        ("step", "libc6"),
        ("phase", ("unpacking required packages", 1)),
        ("step", "libc6"),
        ("phase", ("unpacking the base system", 1)),
        ("step", "python3"),
    ]


# -- the store ----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    """A store over a fake built `minimal` (metadata and an empty rootfs) in a temp cache."""
    build = tmp_path / "cache" / "templates" / "minimal" / "0123456789abcdef"
    (build / "rootfs").mkdir(parents=True)
    write_info(TemplateInfo(name="minimal", type="base", platform=True, path=build, recipe_hash=build.name))
    (build.parent / "current").symlink_to(build.name)
    return TemplateStore(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", ["", "A", "Upper", "../x", "a/b", ".hidden", "-a", "a-", "a..b", "a b", "x" * 64])
def test_invalid_names_are_refused(store: TemplateStore, name: str) -> None:
    with pytest.raises(InvalidTemplateName, match="invalid template name"):
        validate_name(name)
    with pytest.raises(InvalidTemplateName):
        store.resolve(name, "team-1")


@pytest.mark.parametrize("name", ["a", "my-snap_1.2", "x" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


def test_bad_team_ids_are_refused(store: TemplateStore) -> None:
    parent = store.resolve("minimal")
    for team in ["../etc", "a/b", "", ".x"]:
        with pytest.raises(InvalidTemplateName, match="team id"):
            store.begin_snapshot(team, "snap", runtime="namespace", parent=parent)


def test_resolve_platform_and_missing(store: TemplateStore) -> None:
    info = store.resolve("minimal", "team-1")
    assert info.platform and info.path.name == "0123456789abcdef" and info.rootfs.is_dir()
    with pytest.raises(TemplateNotFound, match="'nope' not found"):
        store.resolve("nope", "team-1")


def test_snapshot_lifecycle(store: TemplateStore) -> None:
    parent = store.resolve("minimal")
    with store.snapshot_dir(
        "team-1", "snap", runtime="namespace", parent=parent, vcpus=2, memory_mb=1024, metadata={"k": "v"}
    ) as pending:
        assert pending.path.name.startswith(".tmp-")
        assert store.list("team-1") == [parent]  # not visible while being written
        (pending.path / "upper").mkdir()
        (pending.path / "upper" / "file").write_bytes(b"x" * 10_000)
    info = pending.committed
    assert info is not None and info.path == store.data_dir / "templates" / "team-1" / "snap"

    resolved = store.resolve("snap", "team-1")
    assert resolved == info
    assert (resolved.type, resolved.platform, resolved.team_id, resolved.runtime) == (
        "snapshot",
        False,
        "team-1",
        "namespace",
    )
    assert (resolved.vcpus, resolved.memory_mb, resolved.metadata) == (2, 1024, {"k": "v"})
    assert resolved.parent_dir == parent.path and resolved.size_bytes >= 10_000
    assert [t.name for t in store.list("team-1")] == ["minimal", "snap"]
    assert [t.name for t in store.list("team-2")] == ["minimal"]
    with pytest.raises(TemplateNotFound):
        store.resolve("snap", "team-2")

    with pytest.raises(TemplateExists):
        store.begin_snapshot("team-1", "snap", runtime="namespace", parent=parent)
    with store.snapshot_dir("team-1", "snap", runtime="microvm", parent=parent, replace=True) as pending:
        (pending.path / "memory").write_bytes(b"m")
    assert store.resolve("snap", "team-1").runtime == "microvm"
    assert not (store.resolve("snap", "team-1").path / "upper").exists()

    store.delete("team-1", "snap")
    with pytest.raises(TemplateNotFound):
        store.resolve("snap", "team-1")
    with pytest.raises(TemplateNotFound):
        store.delete("team-1", "snap")
    assert list((store.data_dir / "templates" / "team-1").iterdir()) == []


def test_a_parent_template_cannot_be_deleted_before_its_children(store: TemplateStore) -> None:
    with store.snapshot_dir("team-1", "first", runtime="namespace", parent=store.resolve("minimal")) as pending:
        (pending.path / "upper").mkdir()
    first = store.resolve("first", "team-1")
    with store.snapshot_dir("team-1", "second", runtime="namespace", parent=first) as pending:
        (pending.path / "upper").mkdir()
    assert store.resolve("second", "team-1").parent_dir == first.path
    with pytest.raises(TemplateInUse, match="parent of second"):
        store.delete("team-1", "first")
    store.delete("team-1", "second")
    store.delete("team-1", "first")
    assert [t.name for t in store.list("team-1")] == ["minimal"]


def test_failed_snapshot_leaves_nothing(store: TemplateStore) -> None:
    parent = store.resolve("minimal")
    with (
        pytest.raises(RuntimeError, match="runtime failed"),
        store.snapshot_dir("team-1", "snap", runtime="namespace", parent=parent) as pending,
    ):
        (pending.path / "state").write_text("half")
        raise RuntimeError("runtime failed")
    assert list((store.data_dir / "templates" / "team-1").iterdir()) == []
    assert [t.name for t in store.list()] == ["minimal"]


def test_platform_names_are_reserved(store: TemplateStore) -> None:
    parent = store.resolve("minimal")
    with pytest.raises(InvalidTemplateName, match="reserved"):
        store.begin_snapshot("team-1", "minimal", runtime="namespace", parent=parent)
    with pytest.raises(InvalidTemplateName, match="platform template"):
        store.delete("team-1", "minimal")


# -- the command --------------------------------------------------------------------------------


def test_cli_build_unknown_and_cached(minimal_template: TemplateInfo) -> None:
    runner = CliRunner()
    result = runner.invoke(template_app, ["build", "nope"])
    assert result.exit_code == 2
    assert "known: code-interpreter-v1, code-runner-beta, minimal" in " ".join(result.output.split())
    result = runner.invoke(template_app, ["build", "minimal"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output or "built" in result.output
    assert str(minimal_template.path.parent) in result.output.replace("\n", "")


def test_cli_list(store: TemplateStore) -> None:
    runner = CliRunner()
    args = ["list", "--data-dir", str(store.data_dir), "--cache-dir", str(store.cache_dir)]
    result = runner.invoke(template_app, args)
    assert result.exit_code == 0 and "minimal" in result.output
    result = runner.invoke(template_app, [*args, "--team", "../x"])
    assert result.exit_code == 2 and "team id" in result.output


# -- start commands -----------------------------------------------------------------------------


def test_a_snapshot_keeps_its_parents_start_command_unless_given_one(store: TemplateStore) -> None:
    service = StartCommand(cmd="exec python3 -m http.server 8000", ready=ReadyCheck(http_port=8000, retries=3))
    base = store.resolve("minimal")
    parent = dataclasses.replace(base, start=service)
    write_info(parent)
    assert store.resolve("minimal").start == service  # kept in template.json
    with store.snapshot_dir("team-1", "inherits", runtime="namespace", parent=parent) as pending:
        (pending.path / "upper").mkdir()
    inherits = store.resolve("inherits", "team-1")
    assert inherits.start == service and not inherits.service_in_memory
    other = StartCommand(cmd="exec sleep infinity", user="root", ready=ReadyCheck(cmd="pgrep sleep"))
    with store.snapshot_dir("team-1", "own", runtime="microvm", parent=inherits, start=other) as pending:
        (pending.path / "memory").write_bytes(b"m")
    own = store.resolve("own", "team-1")
    assert own.start == other and own.service_in_memory  # a microvm snapshot restores it running
    assert store.resolve("minimal").start == service and base.start is None


def test_start_command_is_in_the_template_hash_not_the_base_layers(tmp_path: Path) -> None:
    envd = frozen_envd(tmp_path)
    with_service = dataclasses.replace(MINIMAL, start=StartCommand(cmd="exec sleep infinity"))
    assert with_service.hash() == MINIMAL.hash()  # same base layer: no second debootstrap
    assert template_hash(with_service, envd) != template_hash(MINIMAL, envd)
    code_runner = PLATFORM_RECIPES["code-runner-beta"]
    assert code_runner.start is not None and code_runner.start.ready is not None
    assert code_runner.start.ready.http_port == 8888 and code_runner.start.user == "user"


def test_code_interpreter_builds_on_the_code_runner_base_layer(tmp_path: Path) -> None:
    """`code-interpreter-v1` shares code-runner-beta's base layer (one debootstrap) and adds its
    server in its own layer, written without touching the base tree it hard-links."""
    envd = frozen_envd(tmp_path)
    runner, interpreter = PLATFORM_RECIPES["code-runner-beta"], PLATFORM_RECIPES["code-interpreter-v1"]
    assert interpreter.hash() == runner.hash()
    assert base_layer_dir(tmp_path, interpreter) == base_layer_dir(tmp_path, runner)
    assert template_hash(interpreter, envd) != template_hash(runner, envd)
    changed = dataclasses.replace(interpreter, layer_files=(ImageFile(CODE_INTERPRETER_SERVER, "changed"),))
    assert template_hash(changed, envd) != template_hash(interpreter, envd)
    assert interpreter.start is not None and interpreter.start.ready is not None
    assert interpreter.start.ready.http_port == 49999

    base = tmp_path / "base"
    (base / "usr").mkdir(parents=True)
    shared = base / "usr" / "shared.py"
    shared.write_text("base layer")
    layer = tmp_path / "layer"
    subprocess.run(["cp", "-a", "--link", str(base), str(layer)], check=True)
    _write_layer_file(layer, ImageFile("/usr/shared.py", "the template's own"))
    _write_layer_file(layer, ImageFile("/usr/local/lib/wrenn/new.py", "new", 0o755))
    assert shared.read_text() == "base layer"  # not written through the hard link
    assert (layer / "usr" / "shared.py").read_text() == "the template's own"
    assert (layer / "usr/local/lib/wrenn/new.py").stat().st_mode & 0o777 == 0o755
