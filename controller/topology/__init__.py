"""Topology: the store of what the nodes report, its typed events, synthetic snapshots."""
