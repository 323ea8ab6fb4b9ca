"""The port proxy: `{port}-{capsule_id}.{proxy domain}` → that capsule's port (docs/ports.md).

`middleware.ControlPlaneApp` (the API's app) takes, before the API sees it, every request whose Host names
a capsule port; `gate` finds the capsule (resuming it if paused) and checks the opt-in key;
`pool` keeps connections to capsule ports for reuse; `http_relay` and `ws_relay` move one HTTP
exchange or one WebSocket session over such a connection.
"""
