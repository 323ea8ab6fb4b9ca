"""Hosts as the fleet sees them: the join flow (registration token → host JWT + refresh token,
heartbeat, sandbox events), status from heartbeats (`fleet.py`), agent keys, and the teams'
placement tags. The operator's hosts API (create/list/delete/tags/BYOC) is `hosts_admin`."""
