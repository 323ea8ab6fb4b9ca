"""Hosts, as far as the join flow needs: registration token → host JWT + refresh token, heartbeat,
autonomous sandbox events. The full hosts API (create/list/delete/tags/BYOC) is a later issue."""
