"""Named dims for hook activations, from the hook name and the model's shapes.

Examples
--------
>>> class Cfg: d_model, n_heads, d_head, d_mlp, d_vocab = 8, 2, 4, 32, 50
>>> hook_dims("blocks.0.attn.hook_z", (3, 5, 2, 4), Cfg)
('seq', 'pos', 'head', 'd_head')
>>> hook_dims("blocks.1.hook_resid_post", (3, 5, 8), Cfg)
('seq', 'pos', 'd_model')
"""

from __future__ import annotations

_ATTENTION_MAP_SUFFIXES = ("hook_pattern", "hook_attn_scores")


def hook_dims(hook: str, shape: tuple[int, ...], cfg) -> tuple[str, ...]:
    """Dims of a hook's activation ``[seq, ...]`` of the given ``shape``.

    Attention maps are ``(seq, head, dest, src)``; per-head vectors are
    ``(seq, pos, head, d_head)``; the last axis is named by the model size it
    matches (``d_model``, ``d_mlp``, ``d_head``, ``d_vocab``); anything else
    is ``dim_<i>`` so that nothing is mislabelled.
    """
    missing = [n for n in ("n_heads", "d_head", "d_model", "d_vocab") if not hasattr(cfg, n)]
    if missing:
        raise TypeError(f"cfg: expected a model config with {', '.join(missing)} (model.cfg), got {cfg!r}")
    if hook.endswith(_ATTENTION_MAP_SUFFIXES) and len(shape) == 4:
        return ("seq", "head", "dest", "src")
    dims = ["seq", "pos"][: len(shape)]
    rest = shape[2:]
    if len(rest) == 2 and rest[0] == cfg.n_heads:
        return (*dims, "head", "d_head" if rest[1] == cfg.d_head else "d_model" if rest[1] == cfg.d_model else "dim_3")
    sizes = {cfg.d_model: "d_model", getattr(cfg, "d_mlp", None): "d_mlp", cfg.d_vocab: "d_vocab",
             cfg.d_head: "d_head"}
    for i, size in enumerate(rest):
        name = sizes.get(size) if i == len(rest) - 1 else None
        dims.append(name or f"dim_{i + 2}")
    return tuple(dims)
