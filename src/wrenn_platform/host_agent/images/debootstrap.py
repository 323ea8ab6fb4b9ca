"""The slow layer: debootstrap a Debian tree and configure it, with progress parsed from its output."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from wrenn_platform.host_agent.images.progress import Reporter
from wrenn_platform.host_agent.images.recipe import BaseRecipe


class BuildError(Exception):
    """A template build failed; the message says what to do, the log file has the details."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


# debootstrap's info lines: one per package ("I: Retrieving libc6 2.36-9+deb12u10",
# "I: Unpacking libc6...") and headlines that start a phase ("I: Unpacking the base system...").
_PACKAGE_RE = re.compile(
    r"^I: (?:(?P<fetch>Retrieving|Validating) (?P<fpkg>\S+) \S+"
    r"|(?P<verb>Extracting|Unpacking|Configuring) (?P<pkg>[^\s.]\S*?)\.\.\.)$"
)
_HEADLINE_RE = re.compile(r"^I: (?P<text>.+?)(?:\.\.\.)?$")


class DebootstrapProgress:
    """Turns debootstrap's output into phases (its own headlines) and steps (packages).

    Totals: all packages are known once downloads end; "required" ones once extraction ends.
    """

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.current: str | None = None
        self.packages: set[str] = set()
        self.extracted = 0

    def feed(self, line: str) -> None:
        match = _PACKAGE_RE.match(line)
        if match is not None:
            if match.group("fetch"):
                package = match.group("fpkg")
                self._enter("downloading packages")
                if package not in self.packages:
                    self.packages.add(package)
                    self.reporter.step(package)
                return
            verb, package = match.group("verb"), match.group("pkg")
            if verb == "Extracting":
                self._enter("extracting required packages")
                self.extracted += 1
            elif self.current is None or not self.current.startswith(verb.lower()):
                self._enter(verb.lower())
            self.reporter.step(package)
            return
        headline = _HEADLINE_RE.match(line)
        if headline is None:
            return
        text = headline.group("text")
        if "required packages" in text:
            self._enter(text[0].lower() + text[1:], self.extracted or None)
        elif "base system" in text and "installed" not in text:
            self._enter(text[0].lower() + text[1:], len(self.packages) - self.extracted or None)
        elif text.startswith(("Resolving dependencies", "Installing core packages")):
            self._enter(text[0].lower() + text[1:])
        elif text.startswith(("Retrieving InRelease", "Checking Release")):
            self._enter("reading the archive index")

    def _enter(self, title: str, total: int | None = None) -> None:
        if title != self.current:
            self.current = title
            self.reporter.phase(title, total)


def run_logged(
    argv: Sequence[str],
    log: IO[str],
    on_line: DebootstrapProgress | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a command, every output line to the log (and the progress parser); raise on failure."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    with subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if on_line is not None:
                on_line.feed(line.rstrip("\n"))
        code = proc.wait()
    log.flush()
    if code != 0:
        raise subprocess.CalledProcessError(code, list(argv))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LC_", "LANG"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["LC_ALL"] = "C.UTF-8"
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def debootstrap(recipe: BaseRecipe, rootfs: Path, deb_cache: Path, log: IO[str], reporter: Reporter) -> None:
    """Debootstrap `recipe` into `rootfs` (which must not exist yet), reusing .debs in `deb_cache`.

    Runs in a private mount namespace: whatever debootstrap mounts inside the target (/proc,
    /sys, device binds) disappears with it, even when it fails half-way.
    """
    deb_cache.mkdir(parents=True, exist_ok=True)
    argv = [
        "unshare", "--mount", "--propagation", "private", "--",
        "debootstrap",
        f"--variant={recipe.variant}",
        f"--arch={recipe.arch}",
        f"--include={','.join(recipe.packages)}",
        "--components=main",
        f"--cache-dir={deb_cache.resolve()}",
        recipe.suite, str(rootfs), recipe.mirror,
    ]  # fmt: skip
    run_logged(argv, log, DebootstrapProgress(reporter), env=_clean_env())


def write_files(recipe: BaseRecipe, rootfs: Path) -> None:
    for item in recipe.all_files():
        target = rootfs / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text(item.content)
        os.chmod(target, item.mode)


def configure(recipe: BaseRecipe, rootfs: Path, log: IO[str], reporter: Reporter) -> None:
    """Write the recipe's files and run its setup script in the tree (users, apt lists)."""
    reporter.phase("configuring the image")
    write_files(recipe, rootfs)
    # The image's resolv.conf holds fallbacks; the setup script needs the host's resolver.
    # /proc and the bind vanish with the private mount namespace.
    inner = (
        'set -e; mount -t proc proc "$1/proc"; mount --bind /etc/resolv.conf "$1/etc/resolv.conf"; '
        'exec chroot "$1" /bin/sh -c "$2"'
    )
    argv = [
        "unshare", "--mount", "--propagation", "private", "--",
        "/bin/sh", "-c", inner, "wrenn-setup", str(rootfs), recipe.setup_script,
    ]  # fmt: skip
    run_logged(argv, log, env=_clean_env())
    reporter.step("done")
