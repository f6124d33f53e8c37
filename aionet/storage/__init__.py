"""Stores shared by handlers (the Maildir store of smtp and pop3)."""
