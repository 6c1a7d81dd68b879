"""Data for the lessons: toy vocabularies, synthetic tasks and real text corpora."""
