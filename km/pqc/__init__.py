"""Post-quantum key establishment between end key managers, and the key mode of each association."""
