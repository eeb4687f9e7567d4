"""Several domains, each its own operator: abstract views and two-phase reservations."""
