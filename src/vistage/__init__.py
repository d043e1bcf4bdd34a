"""vistage: keyword-driven, reproducible stages for training image classifiers."""

__version__ = "0.1.0"
