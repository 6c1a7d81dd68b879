"""Checks for chapter transformer (filled in by the chapter author)."""

__all__: list[str] = []
