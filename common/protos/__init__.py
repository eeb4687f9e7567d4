"""The gRPC protocols between the parts (.proto files and their generated stubs, never edited)."""
