"""Corpora, loaders for user data, and synthetic generators with planted ground truth."""
