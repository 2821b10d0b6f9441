"""readable_tokens: whole characters, visible whitespace, byte escapes, never U+FFFD, on planted byte sequences."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from workbench.models.tokenizer import SPECIAL_TOKEN, _byte_level_bytes, readable_tokens

MARKS = {"·": " ", "⏎": "\n", "⇥": "\t", "␍": "\r"}


@pytest.fixture(scope="module")
def planted():
    """A byte-level vocabulary: id 1 + b is byte b; some multi-byte tokens whose bytes we choose."""
    inverse = {byte: char for char, byte in _byte_level_bytes().items()}
    extra = {"a\xe2": b"a\xe2", "euro_tail_b": b"\x82\xacb", "emoji_head": b"\xf0\x9f", "emoji_tail_x": b"\x80x",
             "x_emoji_head": b"x\xf0\x9f", "emoji_tail_98_x": b"\x98\x80x",
             "overlong": b"\xc0\x80"}
    vocab = {SPECIAL_TOKEN: 0, **{inverse[b]: 1 + b for b in range(256)}}
    ids = {}
    for name, data in extra.items():
        ids[name] = vocab["".join(inverse[b] for b in data)] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL_TOKEN, eos_token=SPECIAL_TOKEN)
    return wrapped, ids


def _b(*data: int) -> list[int]:
    return [1 + d for d in data]


def test_the_byte_alphabet_is_the_tokenizers_librarys():
    # every byte that occurs in UTF-8 text, as the tokenizers library's ByteLevel pre-tokenizer maps it
    text = "".join(chr(c) for c in [*range(0x00, 0x800), *range(0x800, 0x10000, 61), *range(0x10000, 0x110000, 4099)]
                   if not 0xD800 <= c <= 0xDFFF)
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    inverse = {byte: char for char, byte in _byte_level_bytes().items()}
    assert "".join(p for p, _ in pieces) == "".join(inverse[b] for b in text.encode("utf-8"))
    assert sorted(_byte_level_bytes().values()) == list(range(256))


def test_a_character_split_over_tokens_shows_whole_on_the_token_holding_its_last_byte(planted):
    tok, ids = planted
    # "a€b" as 'a'+E2 | 82 AC 'b': the euro completes in the second token
    assert readable_tokens(tok, [ids["a\xe2"], ids["euro_tail_b"]]).tolist() == ["a", "€b"]
    # 'x' F0 9F | 98 80 'x': the first token keeps its 'x', so the 4-byte emoji shows whole on the second
    assert readable_tokens(tok, [ids["x_emoji_head"], ids["emoji_tail_98_x"]]).tolist() == ["x", "😀x"]
    # one token per byte: merging would leave the first two blank, so every byte stays where it is
    assert readable_tokens(tok, _b(0xE2, 0x82, 0xAC)).tolist() == ["<0xE2>", "<0x82>", "<0xAC>"]
    # a 4-byte emoji over three tokens, the middle one only its byte: escaped, not merged
    assert readable_tokens(tok, [ids["emoji_head"], *_b(0x98), ids["emoji_tail_x"]]).tolist() == \
        ["<0xF0><0x9F>", "<0x98>", "<0x80>x"]
    # each token on its own (top logits): partial characters are escaped, never merged
    assert readable_tokens(tok, [ids["a\xe2"], ids["euro_tail_b"]], sequence=False).tolist() == \
        ["a<0xE2>", "<0x82><0xAC>b"]


def test_lone_continuation_invalid_bytes_and_specials_are_escaped_or_shown_as_they_are(planted):
    tok, ids = planted
    assert readable_tokens(tok, _b(0x82, ord("a"))).tolist() == ["<0x82>", "a"]
    assert readable_tokens(tok, [*_b(0xFF), ids["overlong"]]).tolist() == ["<0xFF>", "<0xC0><0x80>"]
    # a special token is its own text and breaks a character: nothing merges across it
    assert readable_tokens(tok, [*_b(0xE2), 0, *_b(0x82, 0xAC)]).tolist() == \
        ["<0xE2>", SPECIAL_TOKEN, "<0x82>", "<0xAC>"]


def test_whitespace_and_control_characters_are_visible(planted):
    tok, _ = planted
    assert readable_tokens(tok, _b(ord(" "), ord("\n"), ord("\t"), ord("\r"), 0x0B, ord("x"))).tolist() == \
        ["·", "⏎", "⇥", "␍", "<0x0B>", "x"]


def test_each_row_is_its_own_sequence_and_the_shape_is_kept(planted):
    tok, _ = planted
    out = readable_tokens(tok, torch.tensor([_b(0xE2, 0x82), _b(0xAC, ord("a"))]))
    assert out.shape == (2, 2) and out.tolist() == [["<0xE2>", "<0x82>"], ["<0xAC>", "a"]]
    assert readable_tokens(tok, np.array(_b(ord("q")))[0]).tolist() == "q"  # a 0-d id


def _unrender(text: str) -> bytes:
    """The bytes a readable text stands for: marks back to whitespace, escapes back to bytes."""
    out = b""
    for part in re.split(r"(<0x[0-9A-F]{2}>)", text):
        if re.fullmatch(r"<0x[0-9A-F]{2}>", part):
            out += bytes([int(part[3:5], 16)])
        else:
            out += "".join(MARKS.get(c, c) for c in part).encode("utf-8")
    return out


def test_rendering_the_real_tokenizer_is_lossless_and_never_shows_a_replacement_character(attn_model):
    text = "naïve café — 😀 日本語\n\tdef f(x):\r\n    return 'ü' * 2  # ẞ€"
    ids = attn_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    shown = readable_tokens(attn_model, ids)
    assert "\ufffd" not in "".join(shown)
    assert _unrender("".join(shown)) == text.encode("utf-8")  # lossless: no byte dropped or shown twice
    # any ids at all, even nonsense orders of byte tokens: never U+FFFD, every token visible
    rng = np.random.default_rng(0)
    random_ids = rng.integers(1, len(attn_model.tokenizer), size=(8, 64))
    shown = readable_tokens(attn_model, random_ids)
    assert all("\ufffd" not in t and t for t in shown.ravel())
    assert all(_unrender("".join(row)) == b"".join(
        _unrender(t) for t in readable_tokens(attn_model, r, sequence=False)) for row, r in zip(shown, random_ids))


def test_bad_input_is_refused(planted):
    tok, _ = planted
    with pytest.raises(TypeError, match="tokens: expected integer token ids"):
        readable_tokens(tok, [1.5, 2.0])
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 264\)"):
        readable_tokens(tok, [3, 264])
    with pytest.raises(TypeError, match="sequence: expected a bool"):
        readable_tokens(tok, [3], sequence="yes")
    assert readable_tokens(None, [[3, 4]]).tolist() == [["[3]", "[4]"]]
