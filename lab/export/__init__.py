"""Exports a topology as a network to run on an existing engine (Kubernetes, containerlab)."""
