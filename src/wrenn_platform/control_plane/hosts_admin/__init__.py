"""The operator's hosts API: create (with a one-time registration token), list, get, token
regeneration, delete (preview, force) and tags, with the BYOC permission rules (`access.py`)."""
