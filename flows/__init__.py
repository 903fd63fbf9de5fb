"""Prefect flows that orchestrate the pipeline stages (they pass paths, never large arrays)."""
