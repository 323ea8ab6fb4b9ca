"""The recipe of the platform template `minimal`: data only, hashed to decide when to rebuild.

Two layers: the *base* (debootstrap plus system configuration, slow) and the *envd* layer (envd
copied into the tree, cheap). Each layer has its own hash so an envd change re-does only the
cheap one. Anything that changes what a layer produces must be part of that layer's hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from wrenn_platform.code_interpreter import SERVER_SOURCE
from wrenn_platform.wire.start import ReadyCheck, StartCommand

# Bump when the builder's logic changes the produced tree in a way the data below does not show.
BASE_BUILDER_VERSION = 1
ENVD_LAYER_VERSION = 1

ENVD_LIB_DIR = "/usr/local/lib/wrenn/envd"  # holds the package `wrenn_envd`
ENVD_PACKAGE = "wrenn_envd"
ENVD_LAUNCHER = "/usr/local/bin/wrenn-envd"

LAUNCHER_SCRIPT = f"""#!/bin/sh
# Starts envd, the Wrenn agent of this capsule. Installed by `wrenn template build`.
PYTHONPATH={ENVD_LIB_DIR}${{PYTHONPATH:+:$PYTHONPATH}}
export PYTHONPATH
# -S: no site module (envd is stdlib-only): faster start, a smaller heap.
exec /usr/bin/python3 -S -m {ENVD_PACKAGE} "$@"
"""

HOSTNAME = "capsule"

_HOSTS = f"""127.0.0.1\tlocalhost
127.0.1.1\t{HOSTNAME}
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

# A regular file (not a symlink) so a runtime can bind-mount over it or rewrite it in the
# capsule's upper layer at start; these fallbacks apply only when it does not.
_RESOLV_CONF = """# Written by the capsule runtime at start; these are fallbacks.
nameserver 1.1.1.1
nameserver 8.8.8.8
"""

_APT_CONF = """// Wrenn capsules: apt works as root inside a user namespace (no setuid to _apt there),
// no recommends, no translations.
APT::Sandbox::User "root";
APT::Install-Recommends "false";
Acquire::Languages "none";
"""

# No init system runs services inside a capsule: package scripts must not try to start them.
_POLICY_RC_D = """#!/bin/sh
exit 101
"""

_SUDOERS = "user ALL=(ALL:ALL) NOPASSWD: ALL\n"


@dataclass(frozen=True)
class ImageFile:
    path: str  # absolute, inside the image
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that determines the base layer of a Debian template."""

    name: str
    suite: str
    mirror: str
    security_mirror: str
    variant: str
    arch: str
    packages: tuple[str, ...]
    files: tuple[ImageFile, ...]
    setup_script: str  # run with /bin/sh inside the chroot after debootstrap
    vcpus: int | None = None
    memory_mb: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Metadata of the finished template, not of the base layer: part of the template hash only.
    start: StartCommand | None = None
    # A recipe may build on another's base layer (`base`), adding `layer_files` in its own cheap
    # layer: one debootstrap for both. Template hash only, like `start`.
    base: BaseRecipe | None = None
    layer_files: tuple[ImageFile, ...] = ()

    @property
    def base_recipe(self) -> BaseRecipe:
        return self.base if self.base is not None else self

    def sources_list(self) -> str:
        return (
            f"deb {self.mirror} {self.suite} main\n"
            f"deb {self.mirror} {self.suite}-updates main\n"
            f"deb {self.security_mirror} {self.suite}-security main\n"
        )

    def all_files(self) -> tuple[ImageFile, ...]:
        return (ImageFile("/etc/apt/sources.list", self.sources_list()), *self.files)

    def base_data(self) -> dict[str, Any]:
        """What determines the base layer (JSON-ready)."""
        if self.base is not None:
            return self.base.base_data()
        data = asdict(self)
        for template_only in ("start", "base", "layer_files"):
            data.pop(template_only)
        return data

    def hash(self) -> str:
        data = self.base_data()
        data["builder_version"] = BASE_BUILDER_VERSION
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


# System-wide git defaults: `git init` makes `main`, as users and the published client's branch helpers expect.
_GITCONFIG = "[init]\n\tdefaultBranch = main\n"

_SETUP_SCRIPT = """set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
if ! getent passwd user >/dev/null; then
    useradd --create-home --home-dir /home/user --uid 1000 --user-group --shell /bin/bash user
fi
usermod -aG sudo user
passwd -d user >/dev/null
apt-get update -q
apt-get clean
rm -rf /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/apt/* \
    /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log
"""

MINIMAL = BaseRecipe(
    name="minimal",
    suite="bookworm",
    mirror="http://deb.debian.org/debian",
    security_mirror="http://deb.debian.org/debian-security",
    variant="minbase",
    arch="amd64",
    packages=("python3", "ca-certificates", "curl", "git", "sudo", "procps", "iproute2"),
    files=(
        ImageFile("/etc/hostname", HOSTNAME + "\n"),
        ImageFile("/etc/hosts", _HOSTS),
        ImageFile("/etc/resolv.conf", _RESOLV_CONF),
        ImageFile("/etc/default/locale", "LANG=C.UTF-8\n"),
        ImageFile("/etc/apt/apt.conf.d/90wrenn", _APT_CONF),
        ImageFile("/usr/sbin/policy-rc.d", _POLICY_RC_D, 0o755),
        ImageFile("/etc/sudoers.d/wrenn-user", _SUDOERS, 0o440),
        ImageFile("/etc/gitconfig", _GITCONFIG),
    ),
    setup_script=_SETUP_SCRIPT,
    labels={"os": "debian", "debian_suite": "bookworm"},
)

JUPYTER_PORT = 8888
CODE_RUNNER_KERNEL = "wrenn"  # the kernelspec name the published client asks for

_KERNEL_JSON = """{
  "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
  "display_name": "Python 3 (Wrenn)",
  "language": "python",
  "metadata": {"debugger": false}
}
"""

# No token or password inside the capsule: the port is reached only through the platform's proxy,
# which enforces access. XSRF and origin checks would refuse the clients that proxy reaches it for.
_JUPYTER_CONFIG = f"""# Written by `wrenn template build code-runner-beta`.
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = {JUPYTER_PORT}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.token = ""
c.ServerApp.password = ""
c.ServerApp.disable_check_xsrf = True
c.ServerApp.allow_origin = "*"
c.ServerApp.allow_remote_access = True
c.ServerApp.root_dir = "/home/user"
c.MappingKernelManager.default_kernel_name = "{CODE_RUNNER_KERNEL}"
"""

CODE_RUNNER = BaseRecipe(
    name="code-runner-beta",
    suite=MINIMAL.suite,
    mirror=MINIMAL.mirror,
    security_mirror=MINIMAL.security_mirror,
    variant=MINIMAL.variant,
    arch=MINIMAL.arch,
    packages=(
        *MINIMAL.packages,
        "jupyter-server", "python3-ipykernel", "python3-numpy", "python3-pandas", "python3-matplotlib",
        # debootstrap does not resolve virtual packages: the providers of those the above depend on
        "python3-cffi-backend", "libboost-regex1.74.0",
    ),
    files=(
        *MINIMAL.files,
        ImageFile(f"/usr/local/share/jupyter/kernels/{CODE_RUNNER_KERNEL}/kernel.json", _KERNEL_JSON),
        ImageFile("/etc/jupyter/jupyter_server_config.py", _JUPYTER_CONFIG),
    ),
    setup_script=_SETUP_SCRIPT,
    labels={**MINIMAL.labels, "jupyter_port": str(JUPYTER_PORT), "kernel": CODE_RUNNER_KERNEL},
    start=StartCommand(
        cmd="exec jupyter-server",
        user="user",
        cwd="/home/user",
        ready=ReadyCheck(http_port=JUPYTER_PORT, http_path="/api", interval_sec=0.1, timeout_sec=2.0, retries=900),
    ),
)

CODE_INTERPRETER_PORT = 49999
CODE_INTERPRETER_SERVER = "/usr/local/lib/wrenn/code_interpreter.py"

# E2B's code-interpreter template: code-runner-beta's base, plus our server of E2B's protocol
# (`code_interpreter/server.py`) on 49999 over Jupyter Server's kernels.
CODE_INTERPRETER = BaseRecipe(
    name="code-interpreter-v1",
    suite=CODE_RUNNER.suite,
    mirror=CODE_RUNNER.mirror,
    security_mirror=CODE_RUNNER.security_mirror,
    variant=CODE_RUNNER.variant,
    arch=CODE_RUNNER.arch,
    packages=CODE_RUNNER.packages,
    files=CODE_RUNNER.files,
    setup_script=CODE_RUNNER.setup_script,
    labels={**CODE_RUNNER.labels, "code_interpreter_port": str(CODE_INTERPRETER_PORT)},
    base=CODE_RUNNER,
    layer_files=(ImageFile(CODE_INTERPRETER_SERVER, SERVER_SOURCE.read_text()),),
    start=StartCommand(
        cmd=f"jupyter-server >/tmp/jupyter-server.log 2>&1 & exec python3 {CODE_INTERPRETER_SERVER}",
        user="user",
        cwd="/home/user",
        ready=ReadyCheck(http_port=CODE_INTERPRETER_PORT, http_path="/health", interval_sec=0.1, timeout_sec=2.0,
                         retries=900),
    ),
)

PLATFORM_RECIPES: dict[str, BaseRecipe] = {r.name: r for r in (MINIMAL, CODE_RUNNER, CODE_INTERPRETER)}
