"""Model zoo: bundled tiny models, local Hugging Face folders and hub names.

Examples
--------
>>> from workbench.models import load_model, list_models, tokenize
>>> model = load_model(list_models()[0])
>>> tokenize(model, "import os", seq_len=4).shape
torch.Size([1, 4])
"""

import importlib

# Names resolve on first use (PEP 562), so ``list_models`` (``workbench models``)
# does not pay for importing torch and TransformerLens.
_HOME = {
    "boot_native": "zoo", "default_device": "zoo", "load_model": "zoo",
    "list_models": "catalog",
    "induction_scores": "diagnostics", "mean_loss": "diagnostics", "repeated_random_tokens": "diagnostics",
    "corpus_tokens": "tokenizer", "tokenize": "tokenizer",
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "boot_native",
    "corpus_tokens",
    "default_device",
    "induction_scores",
    "list_models",
    "load_model",
    "mean_loss",
    "repeated_random_tokens",
    "tokenize",
]
