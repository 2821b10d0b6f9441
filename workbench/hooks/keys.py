"""Content keys for cached activations.

A store's key is the sha256 of canonical JSON of everything that determines
its contents: the model id and a hash of its weights, the dtype stored, the
model's processing flags, the tokenizer, a hash of the token ids, the hook
name and the library version. Same inputs -> same key, on any machine.

Examples
--------
>>> import torch
>>> tokens_sha256(torch.tensor([[1, 2]])) == tokens_sha256(torch.tensor([[1, 2]]))
True
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from workbench import __version__

#: Config fields that change what a hook sees (TransformerLens processing flags).
PROCESSING_FLAGS = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases",
                    "refactor_factored_attn_matrices", "use_attn_result", "use_split_qkv_input")
ARCHITECTURE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx",
                       "attn_only", "act_fn", "normalization_type", "positional_embedding_type")


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (name, dtype, shape, bytes).

    Memoised on the model and recomputed when any tensor is replaced (also by
    a view of the same memory with another dtype, shape or layout) or updated
    in place (tracked through tensor version counters).
    """
    state = model.state_dict()
    stamp = tuple((k, v.data_ptr(), v._version, v.dtype, tuple(v.shape), v.stride()) for k, v in state.items())
    memo = getattr(model, "_workbench_weights_memo", None)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    value = digest.hexdigest()
    object.__setattr__(model, "_workbench_weights_memo", (stamp, value))
    return value


def tokenizer_id(model) -> str:
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        return "none"
    backend = getattr(tok, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tokens_sha256(tokens: torch.Tensor) -> str:
    array = np.ascontiguousarray(tokens.detach().cpu().numpy().astype(np.int64))
    return hashlib.sha256(f"{array.shape}|".encode() + array.tobytes()).hexdigest()


def model_id(model) -> str:
    return str(getattr(model, "workbench_id", None) or getattr(model.cfg, "model_name", None) or type(model).__name__)


def model_description(model) -> dict:
    """Everything about ``model`` that goes into a key, as JSON-able values."""
    cfg = model.cfg
    return {
        "model_id": model_id(model),
        "weights_sha256": weights_sha256(model),
        "architecture": {f: _jsonable(getattr(cfg, f, None)) for f in ARCHITECTURE_FIELDS},
        "processing": {f: _jsonable(getattr(cfg, f, None)) for f in PROCESSING_FLAGS},
        "tokenizer": tokenizer_id(model),
    }


def cache_key(description: dict, tokens_hash: str, hook: str, dtype: str) -> str:
    """The store key for one hook's activations.

    Examples
    --------
    >>> len(cache_key({"model_id": "m"}, "abc", "blocks.0.attn.hook_z", "float32"))
    64
    """
    payload = {"model": description, "tokens_sha256": tokens_hash, "hooks": [hook], "dtype": dtype,
               "workbench": __version__}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
