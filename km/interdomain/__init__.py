"""ETSI GS QKD 020 hand-offs of end-to-end keys between border key managers of different domains."""
