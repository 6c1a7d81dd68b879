"""Checks for chapter efficient (filled in by the chapter author)."""

__all__: list[str] = []
