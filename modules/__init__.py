"""Shared SpeechBrain building blocks: brains, losses, metrics, data pipelines."""
