"""Names the control plane and the host agents agree on."""

# Templates every host carries, built by `wrenn template build`; no team can own or delete them.
PLATFORM_TEMPLATE_NAMES: frozenset[str] = frozenset({"minimal", "code-runner-beta", "code-interpreter-v1"})

# The address the embedded agent registers with: there is no network to reach it by.
IN_PROCESS = "in-process"
