"""Checks for chapter positional (filled in by the chapter author)."""

__all__: list[str] = []
