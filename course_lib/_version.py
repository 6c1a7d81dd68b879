"""The course's version: the attention-course release, pinned by every notebook's setup cell."""

__version__ = "0.1.0"
