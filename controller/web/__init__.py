"""The controller's live view: a read-only web page fed by server-sent events."""
