"""The instructor's tools: the exercise generator (``python -m course_lib.authoring.build_exercises``) and the
offline course site (``python -m course_lib.authoring.site``). Nothing a lesson imports lives here."""
