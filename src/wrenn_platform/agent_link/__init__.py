"""The link between the control plane and a host agent, shared by both sides: the `AgentClient`
protocol and its HTTP implementation (`client`), the host key and its signed tokens (`auth`), and
the names both sides agree on (`constants`), and how the control plane reaches a capsule's ports
through its agent (`port_link`). It imports neither `control_plane` nor `host_agent`."""
