"""The SAELens virtual environment shared by the SAE benchmark and the interop fixtures.

A thin name for ``reference_envs.ensure_env("saelens")`` (see there: SAELens
pins transformer-lens < 4, so it gets its own venv with torch linked in).

Usage::

    python benchmarks/saelens_env.py     # builds the environment, prints its python
"""

from __future__ import annotations

from pathlib import Path

from reference_envs import ENVS, SAELENS_VERSION, ensure_env

SAELENS_ENV = ENVS / "saelens"
__all__ = ["ENVS", "SAELENS_ENV", "SAELENS_VERSION", "ensure_saelens_env"]


def ensure_saelens_env() -> Path:
    """The SAELens virtual environment's python; created and filled on first use."""
    return ensure_env("saelens")


if __name__ == "__main__":
    print(ensure_saelens_env())
