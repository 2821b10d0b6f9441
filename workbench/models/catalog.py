"""The bundled models' catalog: names and file layout, without torch.

Kept apart from :mod:`workbench.models.zoo` so that listing the models
(``workbench models``) imports neither torch nor TransformerLens.

Examples
--------
>>> list_models()
['tiny-attn-2l', 'tiny-gelu-2l']
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.data import DATA_DIR

MODELS_DIR = DATA_DIR / "models"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_KEY = "workbench_format"


def is_bundled_dir(path: Path) -> bool:
    """Whether ``path`` is a bundled-format model folder (its ``config.json`` carries ``FORMAT_KEY``).

    Examples
    --------
    >>> is_bundled_dir(MODELS_DIR / "tiny-attn-2l"), is_bundled_dir(MODELS_DIR)
    (True, False)
    """
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return FORMAT_KEY in json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def list_models() -> list[str]:
    """Names of the models bundled in ``data/models``.

    Examples
    --------
    >>> list_models()
    ['tiny-attn-2l', 'tiny-gelu-2l']
    """
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if is_bundled_dir(p))
