"""Serving: top-K lists with explanations and the promotion rule. No Dagster here."""
