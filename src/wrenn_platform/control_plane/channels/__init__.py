"""Notification channels: a team's Discord, Slack, Teams, Google Chat, Telegram, Matrix and webhook
destinations for its events. `providers.py` (config fields, message formats, webhook signature),
`crypto.py` (configs encrypted at rest), `dispatcher.py` (delivery with retries, one worker per
channel), `sender.py` (one HTTP attempt)."""
