"""genre_dagster: GENRE (LLM-powered generative recommendation) as a Dagster project."""

__version__ = "0.1.0"
