"""Byte-level BPE tokenizers for the bundled models, and text -> token ids.

Examples
--------
>>> tok = train_bpe("def f(x):\\n    return x\\n" * 50, vocab_size=300)
>>> tok.decode(tok("def f", add_special_tokens=False)["input_ids"])
'def f'
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKEN = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


def train_bpe(text: str, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``text`` (GPT-2 style, one special token).

    Token id 0 is ``<|endoftext|>``, used as BOS, EOS and padding.
    """
    if vocab_size < 257 + 1:
        raise ValueError(f"vocab_size: expected at least 258 (256 bytes + special + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return _wrap(tok)


def _wrap(tok: Tokenizer, name: str = "workbench-bpe") -> PreTrainedTokenizerFast:
    # add_bos_token=True tells TransformerLens the tokenizer is already set up to
    # prepend BOS, so it does not try to re-load it by name from the hub.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL_TOKEN, eos_token=SPECIAL_TOKEN, pad_token=SPECIAL_TOKEN,
        name_or_path=name, add_bos_token=True,
    )


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerFast:
    """Load the ``tokenizer.json`` shipped beside a bundled model's weights."""
    path = Path(model_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model_dir: no {TOKENIZER_FILE} in {model_dir}")
    return _wrap(Tokenizer.from_file(str(path)), name=str(model_dir))


def tokenize(model, texts: str | list[str], seq_len: int, *, prepend_bos: bool = True) -> torch.LongTensor:
    """Token ids ``[n_texts, seq_len]`` for ``texts`` with ``model``'s tokenizer.

    Each text is tokenized (with a BOS token first when ``prepend_bos``),
    then cut to ``seq_len`` or right-padded with the pad token. The tensor
    is on the model's device.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> model = load_model("tiny-attn-2l")
    >>> tokenize(model, ["import os", "def main():"], seq_len=8).shape
    torch.Size([2, 8])
    """
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts: expected a string or a non-empty list of strings")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate, e.g. half of an emoji cut by slicing
            raise ValueError(f"texts: text {i} is not valid Unicode: {text[err.start:err.end]!r} at character "
                             f"{err.start} is a lone surrogate") from None
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len: expected a positive int, got {seq_len!r}")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("model: has no tokenizer attached")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if prepend_bos:
            ids = [tokenizer.bos_token_id] + ids
        ids = ids[:seq_len] + [pad] * max(0, seq_len - len(ids))
        rows.append(ids)
    device = next(model.parameters()).device
    return torch.tensor(rows, dtype=torch.long, device=device)


def corpus_tokens(model, n_seq: int, seq_len: int, *, split: str = "held_out") -> torch.LongTensor:
    """``[n_seq, seq_len]`` windows of the bundled corpus, tokenized for ``model`` (BOS first).

    Consecutive slices of ``4 * seq_len`` characters, enough text for
    ``seq_len`` tokens of code.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> corpus_tokens(load_model("tiny-attn-2l"), 3, 16).shape
    torch.Size([3, 16])
    """
    from workbench.data.corpus import load_corpus

    if not isinstance(n_seq, int) or n_seq < 1:
        raise ValueError(f"n_seq: expected a positive int, got {n_seq!r}")
    text = load_corpus(split)
    width = 4 * seq_len
    return tokenize(model, [text[i * width:(i + 1) * width] for i in range(n_seq)], seq_len=seq_len)
