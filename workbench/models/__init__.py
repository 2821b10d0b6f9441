"""Model zoo: bundled tiny models, local Hugging Face folders and hub names.

Examples
--------
>>> from workbench.models import load_model, list_models, tokenize
>>> model = load_model(list_models()[0])
>>> tokenize(model, "import os", seq_len=4).shape
torch.Size([1, 4])
"""

from workbench.models.diagnostics import induction_scores, mean_loss, repeated_random_tokens
from workbench.models.tokenizer import corpus_tokens, tokenize
from workbench.models.zoo import boot_native, default_device, list_models, load_model

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
