"""What the deployable parts share, below all of them: ids from names, tracing, protocol stubs."""
