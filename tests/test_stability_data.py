"""Corpus loading (clear errors for bad files), the split, batches and the unigram loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from attnbench.stability.data import CharData, CorpusError, CorpusRef, read_corpus


def test_default_corpus_is_the_stdlib_topics() -> None:
    text = read_corpus(None)
    assert len(text) > 100_000  # about 465 K characters on CPython 3.11-3.12
    assert "the" in text and len(set(text)) < 200


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"--corpus .*nope\.txt: no such file"):
        read_corpus(str(tmp_path / "nope.txt"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not a regular file"):
        read_corpus(str(tmp_path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match="empty.txt: file is empty"):
        read_corpus(str(path))


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"not UTF-8 text \(byte 0xe9 at offset 3"):
        read_corpus(str(path))


def test_utf8_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.txt"
    path.write_text("caf\u00e9 " * 10, encoding="utf-8")
    assert read_corpus(str(path)) == "caf\u00e9 " * 10


def test_corpus_too_short_for_context() -> None:
    with pytest.raises(CorpusError, match=r"100 characters is too short for a context of 64; "
                                          r"need at least 650"):
        CharData.from_text("abcd" * 25, block_size=64)


def test_split_is_contiguous_and_covers_the_text() -> None:
    text = "".join(chr(97 + i % 26) for i in range(1000))
    data = CharData.from_text(text, block_size=8)
    decoded = "".join(data.vocab[i] for i in torch.cat([data.train, data.val]).tolist())
    assert decoded == text and len(data.val) == 100


def test_batches_are_shifted_windows_and_deterministic() -> None:
    data = CharData.from_text("".join(chr(97 + i % 26) for i in range(1000)), block_size=8)
    x1, y1 = data.train_batch(torch.Generator().manual_seed(3), 4, 8)
    x2, y2 = data.train_batch(torch.Generator().manual_seed(3), 4, 8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (4, 8) and torch.equal(x1[:, 1:], y1[:, :-1])
    val = data.val_batches(2, 4, 8)
    assert len(val) == 2 and all(torch.equal(a[0], b[0])
                                 for a, b in zip(val, data.val_batches(2, 4, 8), strict=True))


def test_unigram_loss_by_hand() -> None:
    text = "ab" * 45 + "aaaa" * 50 + "ab" * 5 + "a" * 90  # val = last 39 characters
    data = CharData.from_text(text, block_size=4)
    train = data.train.tolist()
    total = len(train) + 2  # add-one smoothing over a 2-character vocabulary
    p = {i: (train.count(i) + 1) / total for i in (0, 1)}
    val = data.val.tolist()
    expected = -sum(math.log(p[i]) for i in val) / len(val)
    assert data.unigram_loss() == pytest.approx(expected, rel=1e-12)


def test_corpus_ref_refuses_different_text(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("hello world " * 100, encoding="utf-8")
    ref = CorpusRef.of(str(path))
    path.write_text("HELLO WORLD " * 100, encoding="utf-8")
    with pytest.raises(CorpusError, match="SHA-256"):
        ref.load(block_size=8)
