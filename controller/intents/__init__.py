"""Intents: compile decisions into node edits, install all-or-none, rebuild, the service."""
