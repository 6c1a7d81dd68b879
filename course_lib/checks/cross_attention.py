"""Checks for chapter cross_attention (filled in by the chapter author)."""

__all__: list[str] = []
