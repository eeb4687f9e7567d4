"""The emulated QKD hardware of a node: fibre channels, physics, key streams and modules."""
