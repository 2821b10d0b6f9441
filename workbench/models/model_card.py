"""Write ``data/models/README.md`` from what each bundled model recorded at training.

Run ``python -m workbench.models.model_card`` after retraining a model.

Examples
--------
>>> "tiny-attn-2l" in render()
True
"""

from __future__ import annotations

import json

from workbench.models.catalog import CONFIG_FILE, MODELS_DIR, list_models

HEADER = """# Bundled models

Tiny transformers trained here, on this project's own corpus, by a committed and
seeded recipe, so that every analysis and test runs offline. Weights are
safetensors (no pickle) next to a JSON config (TransformerLens-native
architecture fields) and the byte-level BPE tokenizer they were trained with.
Load them with `workbench.models.load_model(name)`.

- Corpus: `data/corpus/python_stdlib.txt.gz`, the `.py` sources of the CPython
  standard library (tests and idlelib left out), built by
  `python -m workbench.data.corpus`. Licence: PSF License Agreement (Python
  Software Foundation); the last 5% of the files are held out.
- Tokenizer: byte-level BPE, 2,048 tokens, trained on the train split;
  `<|endoftext|>` (id 0) is BOS, EOS and padding.
- Recipe: `workbench/models/train_tiny.py` (its docstring explains the
  repeated-random-sequence half of each batch that makes induction heads form).
- Regenerate this file with `python -m workbench.models.model_card`.
"""


def render() -> str:
    lines = [HEADER]
    for name in list_models():
        meta = json.loads((MODELS_DIR / name / CONFIG_FILE).read_text())
        arch, train = meta["architecture"], meta["training"]
        scores = train["induction_scores_layer_head"]
        lines += [
            f"## {name}\n",
            f"- Architecture: {arch['n_layers']} layers, d_model {arch['d_model']}, {arch['n_heads']} heads of "
            f"{arch['d_head']}, " + ("attention only" if arch["attn_only"] else f"GELU MLPs of {arch['d_mlp']}")
            + f", context {arch['n_ctx']}, vocabulary {arch['d_vocab']}.",
            f"- Command: `{train['recipe']}`",
            f"- Trained: {train['steps']} steps x {train['batch_size']} x {train['seq_len']} tokens "
            f"({train['tokens_seen']:,} tokens), seed {train['seed']}, {train['train_seconds']:.0f} s on "
            f"{train['machine']} {train.get('device', 'cpu')}, torch {train['torch']}.",
            f"- Held-out loss: **{train['held_out_loss_nats']:.3f} nats/token** over {train['held_out_tokens']:,} "
            f"held-out tokens; unigram cross-entropy of the same tokens: {train['unigram_entropy_nats']:.3f} nats.",
            "- Induction scores (attention from i to i - L + 1 on random tokens repeated with period L = 50), "
            "layer x head: " + "; ".join(
                f"L{layer}: " + ", ".join(f"{s:.2f}" for s in row) for layer, row in enumerate(scores)),
            "",
            "Training loss (every 25 steps):",
            "",
            "| step | loss |",
            "| --- | --- |",
        ]
        curve = train["loss_curve"]
        stride = max(1, len(curve) // 20)
        lines += [f"| {p['step']} | {p['loss']:.3f} |" for p in curve[::stride]]
        probes = [p for p in curve if "induction_score_layer1" in p]
        if probes:
            lines += ["", "Layer-1 induction score during training: " + ", ".join(
                f"step {p['step']}: {p['induction_score_layer1']:.2f}" for p in probes)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    path = MODELS_DIR / "README.md"
    path.write_text(render())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
