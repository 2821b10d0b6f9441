"""Byte-level BPE tokenizers for the bundled models, and text -> token ids.

Examples
--------
>>> tok = train_bpe("def f(x):\\n    return x\\n" * 50, vocab_size=300)
>>> tok.decode(tok("def f", add_special_tokens=False)["input_ids"])
'def f'
"""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path

import numpy as np
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


# --- readable token text ---------------------------------------------------------------------------------------

VISIBLE = {" ": "·", "\n": "⏎", "\t": "⇥", "\r": "␍"}  # whitespace drawn as a visible mark
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")      # byte-fallback tokens of SentencePiece-style vocabularies


@functools.lru_cache(maxsize=1)
def _byte_level_bytes() -> dict[str, int]:
    """The byte each character of the GPT-2 byte-level alphabet stands for.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls,
    space, ...) are mapped in order to the characters from U+0100 on.
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)}
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


def _escape(data: bytes) -> str:
    return "".join(f"<0x{b:02X}>" for b in data)


def _visible(char: str) -> str:
    if char in VISIBLE:
        return VISIBLE[char]
    if unicodedata.category(char) == "Cc":  # other control characters: their byte
        return _escape(char.encode("utf-8"))
    return char


def _utf8_length(lead: int) -> int:
    """Bytes of the UTF-8 character starting with byte ``lead``; 0 when ``lead`` cannot start one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _render(parts: list[bytes]) -> list[str]:
    """Readable text of consecutive tokens' bytes, losing nothing and repeating nothing (see readable_tokens)."""
    stream = b"".join(parts)
    owner = [i for i, part in enumerate(parts) for _ in part]
    units = []  # (start, length, character or None for a byte that starts no whole character)
    p = 0
    while p < len(stream):
        n = _utf8_length(stream[p])
        try:
            char = stream[p:p + n].decode("utf-8") if n and p + n <= len(stream) else None
        except UnicodeDecodeError:  # a continuation byte missing, an overlong form, a surrogate
            char = None
        units.append((p, n if char is not None else 1, char))
        p += n if char is not None else 1
    ends = {owner[start + n - 1] for start, n, _ in units}  # tokens in which some unit ends: never left blank
    texts: list[list[str]] = [[] for _ in parts]
    for start, n, char in units:
        first, last = owner[start], owner[start + n - 1]
        if char is not None and all(k in ends for k in range(first, last)):
            texts[last].append(_visible(char))  # whole, on the token holding its last byte
        else:  # a byte of no character, or a character that would leave a token blank: bytes where they are
            for q in range(start, start + n):
                texts[owner[q]].append(_escape(stream[q:q + 1]))
    return ["".join(text) for text in texts]


def _token_bytes(tokenizer, ids: list[int]) -> dict[int, bytes | str]:
    """Each id's bytes; a special token's text as a str (shown as it is, never merged)."""
    special = set(tokenizer.all_special_ids)
    alphabet = _byte_level_bytes()
    out: dict[int, bytes | str] = {}
    for i, piece in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
        if i in special or piece is None:
            out[i] = piece if piece is not None else f"[{i}]"
        elif all(c in alphabet for c in piece):
            out[i] = bytes(alphabet[c] for c in piece)
        elif _BYTE_TOKEN.fullmatch(piece):
            out[i] = bytes([int(_BYTE_TOKEN.fullmatch(piece).group(1), 16)])
        else:  # a vocabulary that is not byte-level: its own decoding of the piece ("▁" for space and so on)
            out[i] = tokenizer.convert_tokens_to_string([piece]).encode("utf-8")
    return out


def readable_tokens(model, tokens, *, sequence: bool = True) -> np.ndarray:
    """Each token's text, readable: whitespace visible, never '�'.

    Spaces show as ``·``, newlines as ``⏎``, tabs as ``⇥``; other control
    characters and bytes that are not (yet) a whole UTF-8 character show as
    escapes such as ``<0xE2>``. A byte-level tokenizer may split one
    character over several tokens; along a sequence the character is shown
    whole on the token that holds its last byte (the first position whose
    representation has seen all of it) when the earlier tokens it touches
    keep text of their own, else its bytes are escaped where they are, so
    no token is blank and no byte shows twice: the tokens' texts, joined,
    spell the bytes exactly. Special tokens show their own text.

    Parameters
    ----------
    model
        A model with a ``tokenizer`` attribute (or the tokenizer itself);
        without one every token reads ``[id]``.
    tokens : array-like of int, any shape
        Token ids; with ``sequence`` the last axis is read as consecutive text.
    sequence : bool
        False renders every token on its own (e.g. the top logits of a feature,
        which are not consecutive): a partial character is always escaped.

    Returns
    -------
    numpy.ndarray of str (object dtype), the shape of ``tokens``.

    Examples
    --------
    >>> tok = train_bpe("def f(x):\\n    return x\\n" * 50, vocab_size=300)
    >>> ids = tok("def f(x):\\n  return x", add_special_tokens=False)["input_ids"]
    >>> "".join(readable_tokens(tok, ids))
    'def·f(x):⏎··return·x'
    >>> euro = tok("€", add_special_tokens=False)["input_ids"]    # not in this vocabulary: one token per byte
    >>> readable_tokens(tok, euro).tolist()
    ['<0xE2>', '<0x82>', '<0xAC>']
    """
    tokenizer = getattr(model, "tokenizer", model)
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    ids = np.asarray(tokens)
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"tokens: expected integer token ids, got dtype {ids.dtype}")
    if not isinstance(sequence, bool):
        raise TypeError(f"sequence: expected a bool, got {type(sequence).__name__}")
    out = np.empty(ids.shape, dtype=object)
    if ids.size == 0:
        return out
    if tokenizer is None or not hasattr(tokenizer, "convert_ids_to_tokens"):
        out[...] = np.vectorize(lambda i: f"[{int(i)}]", otypes=[object])(ids)
        return out
    n_vocab = len(tokenizer)
    if ids.min() < 0 or ids.max() >= n_vocab:
        raise ValueError(f"tokens: expected ids in [0, {n_vocab}) of this tokenizer, got {int(ids.min())} to "
                         f"{int(ids.max())}")
    pieces = _token_bytes(tokenizer, np.unique(ids).tolist())
    rows = ids.reshape(-1, ids.shape[-1]) if ids.ndim and sequence else ids.reshape(-1, 1)
    flat = out.reshape(rows.shape)
    for r, row in enumerate(rows):
        run: list[int] = []  # positions of the current run of non-special tokens
        for c in [*range(len(row)), None]:
            piece = pieces[int(row[c])] if c is not None else None
            if c is None or isinstance(piece, str):
                for position, text in zip(run, _render([pieces[int(row[j])] for j in run])):
                    flat[r, position] = text
                run = []
                if c is not None:
                    flat[r, c] = piece
            else:
                run.append(c)
    return flat.reshape(ids.shape)
