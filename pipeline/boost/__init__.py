"""The boost experiment: the same reconstructor trained on real data alone and with each kind of synthetic data."""
