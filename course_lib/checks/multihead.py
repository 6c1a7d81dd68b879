"""Checks for chapter multihead (filled in by the chapter author)."""

__all__: list[str] = []
