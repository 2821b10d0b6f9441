"""The bundled text corpus: CPython standard-library sources (PSF licence).

``data/corpus/python_stdlib.txt.gz`` is built by :func:`build_corpus` from the
``.py`` files of a CPython standard library, in a fixed order, each preceded
by a ``# file: <relative path>`` line. The last ``held_out_fraction`` of the
files (by that order) is the held-out split; the tiny models never train on it.

Examples
--------
>>> text = load_corpus("held_out")
>>> text.startswith("# file: ")
True
"""

from __future__ import annotations

import gzip
import hashlib
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from workbench.data import DATA_DIR

CORPUS_PATH = DATA_DIR / "corpus" / "python_stdlib.txt.gz"
FILE_MARKER = "# file: "
HELD_OUT_FRACTION = 0.05
SPLITS = ("train", "held_out", "all")


def build_corpus(out: Path = CORPUS_PATH, *, max_bytes: int = 6_000_000, stdlib: Path | None = None) -> Path:
    """Concatenate standard-library sources into ``out`` (gzip text).

    Files are taken in sorted path order, skipping tests, ``site-packages``,
    ``idlelib`` and files over 200 kB, until ``max_bytes`` of text; the order
    is deterministic for a given CPython release.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = build_corpus(pathlib.Path(tempfile.mkdtemp()) / "c.txt.gz", max_bytes=20_000)
    >>> p.stat().st_size > 0
    True
    """
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    skip_parts = {"test", "tests", "site-packages", "idlelib", "lib2to3", "__pycache__", "turtledemo"}
    chunks, total = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip_parts.intersection(rel.parts) or path.stat().st_size > 200_000:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        chunk = f"{FILE_MARKER}{rel.as_posix()}\n{text}\n"
        if total + len(chunk) > max_bytes:
            break
        chunks.append(chunk)
        total += len(chunk)
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write("".join(chunks))
    return out


def _split_files(text: str) -> list[str]:
    parts = text.split("\n" + FILE_MARKER)
    return [parts[0]] + [FILE_MARKER + p for p in parts[1:]]


def load_corpus(split: str = "train", path: Path = CORPUS_PATH) -> str:
    """Text of the bundled corpus: ``"train"``, ``"held_out"`` or ``"all"``.

    Examples
    --------
    >>> len(load_corpus("train")) > len(load_corpus("held_out"))
    True
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} is missing; rebuild it with python -m workbench.data.corpus")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    if split == "all":
        return text
    files = _split_files(text)
    n_held = max(1, int(round(len(files) * HELD_OUT_FRACTION)))
    chosen = files[:-n_held] if split == "train" else files[-n_held:]
    return "\n".join(chosen)


def corpus_sha256(path: Path = CORPUS_PATH) -> str:
    """Hash of the corpus file, recorded with the models trained on it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def token_batches(token_ids: np.ndarray, *, batch_size: int, seq_len: int, n_batches: int | None = None,
                  seed: int | None = None) -> Iterator[np.ndarray]:
    """Yield ``[batch_size, seq_len]`` windows of a 1-D token stream.

    With ``seed=None`` the windows are consecutive and non-overlapping (the
    whole stream once, for held-out evaluation); with a seed they start at
    random offsets.

    Examples
    --------
    >>> import numpy as np
    >>> batches = list(token_batches(np.arange(100), batch_size=2, seq_len=10))
    >>> len(batches), int(batches[0][1, 0])
    (5, 10)
    """
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 1:
        raise ValueError(f"token_ids: expected a 1-D stream, got shape {token_ids.shape}")
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if token_ids.size < seq_len:
        raise ValueError(f"token_ids: stream of {token_ids.size} tokens is shorter than seq_len={seq_len}")
    if seed is None:
        n_windows = token_ids.size // seq_len
        windows = token_ids[: n_windows * seq_len].reshape(n_windows, seq_len)
        limit = n_windows // batch_size if n_batches is None else min(n_batches, n_windows // batch_size)
        for b in range(limit):
            yield windows[b * batch_size:(b + 1) * batch_size]
        return
    rng = np.random.default_rng(seed)
    count = 0
    while n_batches is None or count < n_batches:
        starts = rng.integers(0, token_ids.size - seq_len + 1, size=batch_size)
        yield np.stack([token_ids[s:s + seq_len] for s in starts])
        count += 1


if __name__ == "__main__":
    print(build_corpus())
