"""driftline: streaming drift detection for ML predictions on Kafka, with calendar-matched baselines."""

__version__ = "0.1.0"
