"""envd's wire constants: its port, version, and the Connect content types and envelope flags.

Defined here, in envd, because envd is copied alone into every template (as `wrenn_envd`) and can
import nothing outside its package; the host side reads them through `wrenn_platform.wire.envd`.
"""

PORT = 49983
# The E2B envd version whose features this envd has (E2B's client gates features on it): commands'
# stdin and CloseStdin (0.3.0, 0.5.2), the default user (0.4.0), octet-stream uploads (0.5.7), file
# metadata (0.6.2), watch events with entry info (0.6.3). Not watching network mounts (0.6.4).
VERSION = "0.6.3"

CONNECT_JSON = "application/connect+json"
# Opt-in response type of process streams (the client lists it in `Accept`): the same envelopes,
# but output events are RAW_OUTPUT messages — one stream-id byte, then the bytes, no base64/JSON.
CONNECT_RAW_OUTPUT = "application/x-wrenn-connect-raw"
END_STREAM = 0x02
RAW_OUTPUT = 0x80
# Stream ids of RAW_OUTPUT messages.
RAW_STREAM_IDS = {"stdout": 1, "stderr": 2, "pty": 3}
