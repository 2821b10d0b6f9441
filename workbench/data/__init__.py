"""Corpora, loaders for user data, and synthetic generators with planted ground truth.

Examples
--------
>>> from workbench.data.corpus import load_corpus
>>> "def " in load_corpus("held_out")
True
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
"""The repository's ``data`` folder: corpora and bundled models (light: no numpy)."""
