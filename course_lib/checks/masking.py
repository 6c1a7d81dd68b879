"""Checks for chapter masking (filled in by the chapter author)."""

__all__: list[str] = []
