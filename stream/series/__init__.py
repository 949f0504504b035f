"""The series stage: one task per input partition (decode, route, window, sketch, per-series tests).

``task.SeriesTask`` composes the steps, one module each; ``tables.py`` says what they share. Its
output for the model stage is a ``verdict.WindowReport`` per closed model window.
"""
