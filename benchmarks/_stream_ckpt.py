"""Streamed checkpoint spectra for ``bench_spectra.py --stream``: a generated Llama-shaped float16 checkpoint.

The checkpoint has Llama-3.2-1B's shapes (d_model 2048, 32 query and 8
key/value heads of 64, MLP 8192, vocabulary 128,256, tied embeddings; 16
layers = 1.24 B parameters, 2.5 GB in float16), one shard per layer plus one
for the embedding and ``model.safetensors.index.json``. Entries are Gaussian
at init scale plus three rank-one spikes per matrix, above the bulk edge.

Each measured run is its own process (:func:`worker`), so that its peak RSS
(``VmHWM``, reset after imports and a warm-up on a tiny checkpoint) is that
run's alone; the RSS at the reset is subtracted to give what the run itself added.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

LLAMA_1B = dict(d_model=2048, n_layers=16, n_heads=32, n_kv=8, d_head=64, d_mlp=8192, vocab=128256)


def _matrix(rows: int, cols: int, gen):
    """float16 [rows, cols]: N(0, 1/cols) plus three rank-one spikes at 2, 3 and 4 times the bulk edge."""
    import torch

    W = torch.randn(rows, cols, generator=gen) / cols ** 0.5
    edge = (rows ** 0.5 + cols ** 0.5) / cols ** 0.5  # largest singular value of the Gaussian part
    for s in range(3):
        u = torch.randn(rows, 1, generator=gen) / rows ** 0.5
        v = torch.randn(1, cols, generator=gen) / cols ** 0.5
        W.addmm_(u, v, alpha=(2.0 + s) * edge)
    return W.half()


def write_checkpoint(folder: Path, *, d_model: int, n_layers: int, n_heads: int, n_kv: int, d_head: int,
                     d_mlp: int, vocab: int, seed: int = 0) -> dict:
    """Write the sharded checkpoint; returns its shapes (largest matrix, parameter count)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    weight_map, n_params = {}, 0
    shards = [("embed", {"model.embed_tokens.weight": (vocab, d_model), "model.norm.weight": (d_model,)})]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        shards.append((f"layer{i:02d}", {
            p + "self_attn.q_proj.weight": (n_heads * d_head, d_model),
            p + "self_attn.k_proj.weight": (n_kv * d_head, d_model),
            p + "self_attn.v_proj.weight": (n_kv * d_head, d_model),
            p + "self_attn.o_proj.weight": (d_model, n_heads * d_head),
            p + "mlp.gate_proj.weight": (d_mlp, d_model), p + "mlp.up_proj.weight": (d_mlp, d_model),
            p + "mlp.down_proj.weight": (d_model, d_mlp),
            p + "input_layernorm.weight": (d_model,), p + "post_attention_layernorm.weight": (d_model,)}))
    for shard, shapes in shards:
        file = f"model-{shard}.safetensors"
        tensors = {name: _matrix(*shape, gen) if len(shape) == 2 else torch.ones(shape, dtype=torch.float16)
                   for name, shape in shapes.items()}
        save_file(tensors, folder / file)
        n_params += sum(t.numel() for t in tensors.values())
        weight_map.update({name: file for name in tensors})
        del tensors
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": d_model,
              "intermediate_size": d_mlp, "num_hidden_layers": n_layers, "num_attention_heads": n_heads,
              "num_key_value_heads": n_kv, "head_dim": d_head, "vocab_size": vocab, "tie_word_embeddings": True,
              "torch_dtype": "float16", "max_position_embeddings": 2048}
    (folder / "config.json").write_text(json.dumps(config))
    return {"n_params": n_params, "largest_matrix": [vocab, d_model],
            "largest_matrix_bytes": vocab * d_model * 2, "bytes_on_disk": sum(f.stat().st_size for f in folder.iterdir())}


def _status_bytes(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0). ``ru_maxrss`` is no use here: it keeps the
    high-water mark of the process that forked this one (the parent, which generated the checkpoint)."""
    Path("/proc/self/clear_refs").write_text("5")


def worker(folder: str, method: str, top_k: int | None, threads: int, warm: str) -> dict:
    """One streamed ``layer_spectra`` in this process: seconds, peak RSS, and what the run added to it."""
    import torch

    torch.set_num_threads(threads)
    from workbench.spectra import layer_spectra

    kw = dict(method=method, top_k=top_k, progress=False, device="cpu")
    layer_spectra(warm, **kw)  # imports, allocator, the power-law fit's first call
    _reset_peak_rss()
    baseline = _status_bytes("VmRSS")
    start = time.perf_counter()
    ds = layer_spectra(folder, **kw)
    seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM")
    out = {"seconds": seconds, "rss_baseline_bytes": baseline, "rss_peak_bytes": peak,
           "rss_added_bytes": peak - baseline, "n_matrices": int(ds.sizes["matrix"]), "method": method,
           "top_k": top_k}
    if method == "exact":
        out["alpha_range"] = [float(ds.alpha.min()), float(ds.alpha.max())]
    out["log_spectral_norm"] = {str(m): float(v) for m, v in zip(ds.matrix.values, ds.log_spectral_norm.values)
                                if "[" not in str(m)}
    return out


def run_worker(folder: Path, method: str, top_k: int | None, threads: int, warm: Path) -> dict:
    """:func:`worker` in a fresh process (its own peak RSS)."""
    cmd = [sys.executable, __file__, str(folder), method, str(top_k or 0), str(threads), str(warm)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"worker {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def randomized_errors(folder: Path, names: dict[str, str], ks=(10, 50), n_iter: int = 4) -> list[dict]:
    """Top-k randomized vs exact singular values (max relative error, seconds) on checkpoint and planted matrices."""
    import numpy as np
    import torch

    from workbench.spectra.checkpoint import open_checkpoint
    from workbench.spectra.svd import singular_values, top_singular_values

    ckpt = open_checkpoint(folder)
    specs = {s.name: s for s in ckpt.specs}
    cases = {label: lambda n=name: ckpt.matrix(specs[n]) for label, name in names.items()}
    gen = torch.Generator().manual_seed(1)

    def planted():  # a power-law spectrum sigma_i = i^-0.5 (a heavy tail), 8192 x 2048
        U, _ = torch.linalg.qr(torch.randn(8192, 2048, generator=gen))
        V, _ = torch.linalg.qr(torch.randn(2048, 2048, generator=gen))
        return ((U * torch.arange(1, 2049.0) ** -0.5) @ V.T).half()

    cases["planted power law sigma_i = i^-0.5, 8192 x 2048"] = planted
    rows = []
    for label, make in cases.items():
        W = make()
        start = time.perf_counter()
        exact = singular_values(W, device="cpu", dtype=torch.float64).numpy()
        t_exact = time.perf_counter() - start
        for k in ks:
            start = time.perf_counter()
            top = top_singular_values(W, k, n_iter=n_iter, device="cpu", dtype=torch.float32).double().numpy()
            t_top = time.perf_counter() - start
            err = np.abs(top - exact[:k]) / exact[:k]
            rows.append({"matrix": label, "shape": list(W.shape), "k": k, "n_iter": n_iter,
                         "max_relative_error": float(err.max()), "relative_error_sigma_1": float(err[0]),
                         "exact_seconds": t_exact, "randomized_seconds": t_top, "speedup": t_exact / t_top})
            print(f"randomized top-{k} of {label} {tuple(W.shape)}: max relative error {err.max():.2e} "
                  f"(sigma_1 {err[0]:.1e}); {t_top:.2f} s vs exact {t_exact:.2f} s", flush=True)
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's workbench
    folder_, method_, k_, threads_, warm_ = sys.argv[1:6]
    print(json.dumps(worker(folder_, method_, int(k_) or None, int(threads_), warm_)))
