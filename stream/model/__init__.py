"""The model stage: what is decided per model, from the series stage's window reports.

``task.ModelTask`` groups segments, keeps each alert's severity, runs the breakers and their cap
and issues the commands; ``alert.py`` assembles an alert from its notes' evidence.
"""
