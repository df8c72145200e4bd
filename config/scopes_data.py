"""Scope declarations (placeholder until the registry is filled in)."""
SCOPES = []
