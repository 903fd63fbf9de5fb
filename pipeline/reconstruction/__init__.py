"""Reconstructors that consume the data: official-parity metrics, models, training, scoring."""
