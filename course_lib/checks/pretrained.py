"""Checks for chapter pretrained (filled in by the chapter author)."""

__all__: list[str] = []
