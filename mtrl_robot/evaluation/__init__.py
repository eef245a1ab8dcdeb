"""Evaluation: few-shot errors, baselines, tables and plots."""
