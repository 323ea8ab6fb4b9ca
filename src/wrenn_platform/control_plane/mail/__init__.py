"""Outgoing email: the `Mailer` service (SMTP or an outbox of .eml files) and the messages."""
