"""Character-level data for the stability benchmark: a corpus, its vocabulary, a contiguous
train/validation split, seeded training batches and fixed validation batches.

The default corpus is the English text of ``pydoc_data.topics.topics`` (the standard library's
help topics, about 465 K characters): every Python install has it, so the benchmark runs
offline. Its text can differ between Python versions, which is why jobs carry the corpus's
SHA-256 and a worker refuses a corpus that does not match (``CorpusRef.load``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from attnbench.errors import UsageError

DEFAULT_SOURCE = "pydoc_data.topics"
VAL_FRACTION = 0.1  # the last 10% of the text is the validation split


class CorpusError(UsageError):
    """The corpus is missing, unreadable, empty, not UTF-8, or too short for the context."""


def read_corpus(path: str | None) -> str:
    """The text of ``path`` (UTF-8), or of the default corpus when ``path`` is None."""
    if path is None:
        from pydoc_data.topics import topics

        return "".join(topics[key] for key in sorted(topics))
    file = Path(path)
    if not file.exists():
        raise CorpusError(f"--corpus {path}: no such file")
    if not file.is_file():
        raise CorpusError(f"--corpus {path}: not a regular file")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise CorpusError(f"--corpus {path}: cannot read ({exc.strerror})") from None
    if not raw:
        raise CorpusError(f"--corpus {path}: file is empty; expected UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1].hex()
        raise CorpusError(f"--corpus {path}: not UTF-8 text (byte 0x{bad} at offset "
                          f"{exc.start} is invalid: {exc.reason}); convert it, e.g. "
                          f"`iconv -t UTF-8`") from None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CorpusRef:
    """How a job names its corpus: picklable, a few bytes, checked on arrival."""

    path: str | None  # None: the default corpus
    sha256: str

    @classmethod
    def of(cls, path: str | None) -> CorpusRef:
        return cls(path, sha256(read_corpus(path)))

    @property
    def source(self) -> str:
        return DEFAULT_SOURCE if self.path is None else self.path

    def load(self, block_size: int) -> CharData:
        return _load_data(self, block_size)


@functools.lru_cache(maxsize=4)  # one worker runs many jobs on the same corpus
def _load_data(ref: CorpusRef, block_size: int) -> CharData:
    text = read_corpus(ref.path)
    if sha256(text) != ref.sha256:
        raise CorpusError(f"corpus {ref.source}: its SHA-256 on this machine ({sha256(text)[:12]}"
                          f"...) differs from the driver's ({ref.sha256[:12]}...); every worker "
                          "must see the same text (the default corpus changes with the Python "
                          "version)")
    return CharData.from_text(text, block_size, source=ref.source)


@dataclass
class CharData:
    """A corpus encoded as character ids and split contiguously into train and validation."""

    vocab: list[str]
    train: torch.Tensor  # (n_train,) int64
    val: torch.Tensor  # (n_val,) int64
    source: str = ""

    @classmethod
    def from_text(cls, text: str, block_size: int, *, source: str = "") -> CharData:
        if block_size < 1:
            raise ValueError(f"block_size: expected a positive context length, got {block_size}")
        if not text:
            raise CorpusError(f"corpus {source or '(text)'}: is empty")
        vocab = sorted(set(text))  # over the whole text, so validation has no unknown chars
        index = {ch: i for i, ch in enumerate(vocab)}
        ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
        n_val = math.ceil(len(ids) * VAL_FRACTION)
        # Each split needs one window of block_size inputs plus the shifted target.
        if len(ids) - n_val < block_size + 1 or n_val < block_size + 1:
            need = math.ceil((block_size + 1) / VAL_FRACTION)
            raise CorpusError(f"corpus {source or '(text)'}: {len(ids)} characters is too short "
                              f"for a context of {block_size}; need at least {need} (one window "
                              f"of block_size + 1 in each of the train and validation splits)")
        return cls(vocab, ids[:-n_val], ids[-n_val:], source)

    def train_batch(self, generator: torch.Generator, batch_size: int, block_size: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows of the training split; the seeded generator fixes their order."""
        starts = torch.randint(len(self.train) - block_size, (batch_size,), generator=generator)
        return self._windows(self.train, starts, block_size)

    def val_batches(self, n_batches: int, batch_size: int, block_size: int
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed windows spread evenly over the validation split: every run, every evaluation
        point, sees the same text, so validation curves are comparable across runs."""
        count = n_batches * batch_size
        starts = torch.linspace(0, len(self.val) - block_size - 1, count).long()
        return [self._windows(self.val, chunk, block_size) for chunk in starts.split(batch_size)]

    @staticmethod
    def _windows(ids: torch.Tensor, starts: torch.Tensor, block_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = starts[:, None] + torch.arange(block_size + 1)  # (B, N + 1)
        window = ids[offsets]
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()  # inputs, targets (B, N)

    def unigram_loss(self) -> float:
        """Cross-entropy (nats) of the validation text under the training split's character
        frequencies: the loss of a model that ignores context, i.e. the plateau a collapsed run
        sits on. Add-one smoothing keeps a character absent from training finite."""
        counts = Counter(self.train.tolist())
        total = len(self.train) + len(self.vocab)
        log_p = {i: math.log((counts.get(i, 0) + 1) / total) for i in range(len(self.vocab))}
        val_counts = Counter(self.val.tolist())
        return -sum(n * log_p[i] for i, n in val_counts.items()) / len(self.val)
