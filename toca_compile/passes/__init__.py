"""Graph passes; the order they run in is written down in ``pipeline.py``."""
