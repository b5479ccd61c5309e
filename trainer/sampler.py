"""Deterministic training batches from per-language token streams under a mixture.

The batch at step ``s`` is a pure function of ``(streams, weights, seed, s)``: the data position of a
run is its step count, so a run restored from a checkpoint sees exactly the batches it would have seen,
and a branch off a trunk at step ``s`` sees the same batches as a run trained alone to its budget.

Each training sequence is ``T + 1`` tokens (``T`` inputs, ``T`` shifted targets) and comes from one
language. Language ``l`` with weight ``w_l`` owns the sequence slots at times ``(k + 1/2) / w_l``,
``k = 0, 1, ...``, merged in time order: after ``G`` sequences every language has had ``w_l G`` of them
to within one, with no randomness in the counts (so ``mix * D`` is the number of tokens each language
really gave, and epochs are exact).

A language's stream is cut into windows of ``T + 1`` tokens at stride ``T``. A data-constrained
language (its first ``U`` unique tokens, listed in ``shuffle``) visits every window once per epoch in
a random order drawn per epoch, and repeats when a mixture asks it for more tokens than it holds:
``epochs = tokens drawn / U``. An unconstrained stream is read in order, so its first windows do not
depend on how long the stream is (a run trained alone reads what it would read as a branch).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Sampler", "sequences_needed"]


def _slots(weights: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Language index and per-language occurrence index of each of ``total`` sequence slots."""
    langs, occ, times = [], [], []
    for i, w in enumerate(weights):
        if w <= 0:
            continue
        n = int(np.ceil(w * total)) + 1
        k = np.arange(n)
        times.append((k + 0.5) / w)
        langs.append(np.full(n, i, dtype=np.int32))
        occ.append(k)
    order = np.argsort(np.concatenate(times), kind="stable")[:total]
    return np.concatenate(langs)[order], np.concatenate(occ)[order]


def sequences_needed(weights: Mapping[str, float], *, batch_size: int, total_steps: int) -> dict[str, int]:
    """How many sequences each language gives to a run of ``total_steps`` steps (exactly)."""
    names = list(weights)
    w = np.array([float(weights[n]) for n in names])
    lang, _ = _slots(w, batch_size * total_steps)
    counts = np.bincount(lang, minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts) if weights[n] > 0}


class Sampler:
    """Batches ``[B, T + 1]`` (int32) for steps ``0..total_steps-1`` of one run.

    Parameters
    ----------
    streams
        Training token stream (1-D integer array) of every language with positive weight.
    weights
        Sampling weight per language (summing to 1).
    batch_size, seq_len
        ``B`` sequences of ``T`` tokens per step.
    total_steps
        Steps the sampler must serve (the longest budget of the job).
    seed
        Seed of the per-epoch window orders.
    shuffle
        Languages whose windows are visited in a random order each epoch (the data-constrained ones);
        the others are read in order (and must not run out).
    """

    def __init__(self, streams: Mapping[str, np.ndarray], weights: Mapping[str, float], *, batch_size: int,
                 seq_len: int, total_steps: int, seed: int, shuffle: Sequence[str] | None = None):
        self.langs = [l for l, w in weights.items() if w > 0]
        self._shuffle = set(self.langs if shuffle is None else shuffle)
        self.batch_size, self.seq_len, self.total_steps, self.seed = batch_size, seq_len, total_steps, int(seed)
        self._windows = {}
        for l in self.langs:
            stream = np.asarray(streams[l])
            if stream.shape[0] < seq_len + 1:
                raise ValueError(f"language {l!r} has {stream.shape[0]} training tokens, fewer than one sequence "
                                 f"(seq_len + 1 = {seq_len + 1}); raise its U budget or shorten seq_len")
            self._windows[l] = sliding_window_view(stream, seq_len + 1)[::seq_len]  # [n_windows, T + 1]
        w = np.array([float(weights[l]) for l in self.langs])
        self._lang, self._occ = _slots(w / w.sum(), batch_size * total_steps)
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def windows(self, lang: str) -> int:
        """Number of distinct training windows of ``lang`` (one epoch)."""
        return self._windows[lang].shape[0]

    def _perm(self, i: int, epoch: int) -> np.ndarray:
        key = (i, epoch)
        if key not in self._perms:
            n = self._windows[self.langs[i]].shape[0]
            if self.langs[i] in self._shuffle:
                lang_key = zlib.crc32(self.langs[i].encode())
                self._perms[key] = np.random.default_rng([self.seed, lang_key, epoch]).permutation(n)
            elif epoch == 0:
                self._perms[key] = np.arange(n)
            else:
                raise ValueError(f"language {self.langs[i]!r} ran out of text: its stream of {n} windows is read "
                                 "in order and must not repeat (give it a U budget to allow repetition)")
        return self._perms[key]

    def batch(self, step: int) -> np.ndarray:
        """The batch of step ``step``."""
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} outside 0..{self.total_steps - 1}")
        lo = step * self.batch_size
        lang, occ = self._lang[lo:lo + self.batch_size], self._occ[lo:lo + self.batch_size]
        out = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int32)
        for i in np.unique(lang):
            rows = np.flatnonzero(lang == i)
            n = self._windows[self.langs[i]].shape[0]
            epoch, pos = np.divmod(occ[rows], n)
            wid = np.empty_like(pos)
            for e in np.unique(epoch):
                sel = epoch == e
                wid[sel] = self._perm(int(i), int(e))[pos[sel]]
            out[rows] = self._windows[self.langs[i]][wid]
        return out

    def tokens_drawn(self, steps: int) -> dict[str, int]:
        """Tokens (``T`` per sequence) each language has given by the end of ``steps`` steps."""
        counts = np.bincount(self._lang[: steps * self.batch_size], minlength=len(self.langs))
        return {l: int(c) * self.seq_len for l, c in zip(self.langs, counts)}
