"""Module declarations (placeholder until the registry is filled in)."""
MODULES = []
