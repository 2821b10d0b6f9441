"""Corpora, loaders for user data, and synthetic generators with planted ground truth.

Examples
--------
>>> from workbench.data.corpus import load_corpus
>>> "def " in load_corpus("held_out")
True
"""
