"""Devices: NETCONF sessions (the only ncclient user) and their supervision."""
