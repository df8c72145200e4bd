"""Option declarations (placeholder until the registry is filled in)."""
OPTIONS = []
