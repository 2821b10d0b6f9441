"""Cached model hooks: activations stored as zarr, returned as lazy xarray.

Run a model once over a token set, keep the named hook activations on disk,
and every later analysis (SAEs, spectra of activations, probes) reads them
back without running the model. Stores are keyed by content (model weights,
tokenizer, tokens, hook, dtype, library version), written chunk by chunk so
caches larger than memory work, and made visible only when complete.

Examples
--------
>>> import tempfile
>>> from workbench.models import load_model, tokenize
>>> from workbench.hooks import HookCache
>>> model = load_model("tiny-gelu-2l")
>>> tokens = tokenize(model, ["for i in range(10):"], seq_len=16)
>>> ds = HookCache(tempfile.mkdtemp()).activations(model, tokens, "blocks.1.hook_resid_post", progress=False)
>>> ds["blocks.1.hook_resid_post"].shape
(1, 16, 128)
"""

from workbench.hooks.cache import HookCache, compute_hooks, default_hooks
from workbench.hooks.roots import default_root, hooks_root, workbench_root
from workbench.hooks.dims import hook_dims
from workbench.hooks.store import StoreDamagedError

__all__ = ["HookCache", "StoreDamagedError", "compute_hooks", "default_hooks", "default_root", "hook_dims", "hooks_root",
           "workbench_root"]
