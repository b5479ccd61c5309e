"""Text sources: a real per-language corpus on disk, or the synthetic world, behind one interface.

A *text source* gives, per language, a training token stream and held-out test tokens, both byte-level
(UTF-8 bytes, :data:`~trainer.config.SEP` between documents):

- ``langs``                       languages it holds;
- ``available(lang)``             training tokens it can give (``inf`` for the synthetic world);
- ``train_tokens(lang, n)``       the first ``n`` training tokens (a prefix: a smaller U is a subset);
- ``test_tokens(lang, n)``        up to ``n`` held-out tokens, from documents never used for training;
- ``metadata()``, ``relatedness()`` what the cube records (CONTRACTS "Language metadata").

Corpus layouts (:func:`load_corpus`)
------------------------------------
A folder (or its ``data/`` subfolder, as in the MADLAD-400 repository) with, per language, either

- a file ``<lang>.txt`` (documents separated by blank lines), ``<lang>.jsonl[.gz]`` or
  ``<lang>.parquet`` (one document per record, field ``text``); or
- a folder ``<lang>/`` of such shards (``*.txt``, ``*.jsonl``, ``*.jsonl.gz``, ``*.parquet``), read in
  sorted order, e.g. MADLAD-400's ``data/fr/fr_clean_0000.jsonl.gz``; ``glob`` picks shards
  (``"*clean*"``).

Test text: files named ``<lang>.test.*``, shards with ``test`` in their name, or a ``<lang>/test/``
folder are the held-out set; without them the *first* documents, up to ``test_tokens``, are held out
and training starts after them. Either way no training token comes from a test document.
Errors (no text at all, a language without test or training text) are raised before any training.
"""

from __future__ import annotations

import gzip
import json
import math
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import SEP, DataConfig

__all__ = ["Corpus", "load_corpus", "detect_script", "open_source", "encode_documents"]

SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".parquet")
_SCRIPT_CODES = {"LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "CJK": "Hani", "HIRAGANA": "Jpan",
                 "KATAKANA": "Jpan", "HANGUL": "Kore", "ARABIC": "Arab", "HEBREW": "Hebr", "DEVANAGARI": "Deva",
                 "THAI": "Thai", "ARMENIAN": "Armn", "GEORGIAN": "Geor", "BENGALI": "Beng", "TAMIL": "Taml",
                 "ETHIOPIC": "Ethi"}


def detect_script(text: str) -> str:
    """ISO 15924 code of the script most letters of ``text`` are in (``Jpan`` when kana are frequent)."""
    counts: Counter = Counter()
    for ch in text[:200_000]:
        if not ch.isalpha():
            continue
        word = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
        counts[_SCRIPT_CODES.get(word, word.title())] += 1
    if not counts:
        return ""
    if counts["Jpan"] > 0.1 * sum(counts.values()):
        return "Jpan"
    return counts.most_common(1)[0][0]


def encode_documents(docs: Sequence[str]) -> np.ndarray:
    """UTF-8 bytes of each document followed by ``SEP``, as one uint16 stream."""
    parts = []
    for d in docs:
        parts.append(np.frombuffer(d.encode("utf-8"), dtype=np.uint8).astype(np.uint16))
        parts.append(np.array([SEP], np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def _documents(path: Path) -> Iterator[str]:
    suffix = _suffix(path)
    if suffix == ".txt":
        text = path.read_text(encoding="utf-8", errors="replace")
        for block in text.replace("\r\n", "\n").split("\n\n"):
            if block.strip():
                yield block.strip()
    elif suffix in (".jsonl", ".jsonl.gz"):
        opener = gzip.open if suffix.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{str(path)!r} line {i + 1} is not JSON: {err}") from None
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise ValueError(f"{str(path)!r} line {i + 1} has no string field 'text' (the MADLAD-400 layout)")
                if record["text"].strip():
                    yield record["text"]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if "text" not in pf.schema_arrow.names:
            raise ValueError(f"{str(path)!r} has no column 'text'; columns are {', '.join(pf.schema_arrow.names)}")
        for batch in pf.iter_batches(columns=["text"], batch_size=1024):
            for value in batch.column(0).to_pylist():
                if value and value.strip():
                    yield value


def _is_test(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return "test" in rel.parts[:-1] or ".test." in path.name or "test" in path.stem.lower().split("_")


def _discover(root: Path, glob: str) -> dict[str, list[Path]]:
    """``{lang: [shard paths]}`` of a corpus folder."""
    if not root.exists():
        raise FileNotFoundError(f"corpus folder {str(root)!r} not found")
    if not root.is_dir():
        raise ValueError(f"corpus {str(root)!r} must be a folder (of <lang>.txt files or <lang>/ shard folders)")
    if (root / "data").is_dir():
        root = root / "data"
    found: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            shards = sorted(p for p in entry.rglob(glob) if p.is_file() and _suffix(p))
            if shards:
                found[entry.name] = shards
        elif _suffix(entry):
            lang = entry.name.split(".")[0]
            found.setdefault(lang, []).append(entry)
    return found


class Corpus:
    """Real text per language, held in memory as token streams (see the module docstring)."""

    def __init__(self, train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], *,
                 scripts: Mapping[str, str], families: Mapping[str, str] | None = None, path: str = ""):
        self.langs = tuple(train)
        self._train, self._test = dict(train), dict(test)
        self._scripts, self._families = dict(scripts), dict(families or {})
        self.path = path

    def available(self, lang: str) -> float:
        return float(self._train[lang].size)

    def train_tokens(self, lang: str, n: int) -> np.ndarray:
        if n > self._train[lang].size:
            raise ValueError(f"language {lang!r} has {self._train[lang].size} training tokens, fewer than the {n} asked for")
        return self._train[lang][:n]

    def test_tokens(self, lang: str, n: int) -> np.ndarray:
        return self._test[lang][:n]

    def metadata(self) -> dict[str, dict[str, Any]]:
        return {l: {"script": self._scripts.get(l, ""), "family": self._families.get(l, "")} for l in self.langs}

    def relatedness(self) -> None:
        """Real corpora carry no ground-truth relatedness."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "corpus", "path": self.path,
                "train_tokens": {l: int(v.size) for l, v in self._train.items()},
                "test_tokens": {l: int(v.size) for l, v in self._test.items()}}


def load_corpus(path: str | Path, *, langs: Sequence[str] | None = None, test_tokens: int = 4096,
                max_train_tokens: Mapping[str, float] | float = math.inf, glob: str = "*",
                families: Mapping[str, str] | None = None) -> Corpus:
    """Read a corpus folder (layouts in the module docstring).

    ``max_train_tokens`` (per language or for all) stops reading once that many training tokens are in.
    """
    root = Path(path)
    found = _discover(root, glob)
    if not found:
        raise ValueError(f"empty corpus: no text found under {str(root)!r}; expected <lang>.txt / <lang>.jsonl[.gz] / "
                         f"<lang>.parquet files or <lang>/ folders of such shards (glob {glob!r})")
    if langs is not None:
        missing = [l for l in langs if l not in found]
        if missing:
            raise ValueError(f"corpus {str(root)!r} has no text for {', '.join(map(repr, missing))}; "
                             f"it has {', '.join(found)}")
        found = {l: found[l] for l in langs}
    base = root / "data" if (root / "data").is_dir() else root
    train, test, scripts = {}, {}, {}
    for lang, shards in found.items():
        cap = max_train_tokens.get(lang, math.inf) if isinstance(max_train_tokens, Mapping) else max_train_tokens
        test_files = [p for p in shards if _is_test(p, base)]
        train_files = [p for p in shards if p not in test_files]
        held, kept, n_held, n_kept, n_docs = [], [], 0, 0, 0
        for p in test_files:
            for doc in _documents(p):
                if n_held >= test_tokens:
                    break
                held.append(doc)
                n_held += len(doc.encode("utf-8")) + 1
        for p in train_files:
            for doc in _documents(p):
                n_docs += 1
                if not test_files and n_held < test_tokens:
                    held.append(doc)
                    n_held += len(doc.encode("utf-8")) + 1
                    continue
                if n_kept >= cap:
                    break
                kept.append(doc)
                n_kept += len(doc.encode("utf-8")) + 1
            if n_kept >= cap:
                break
        if not held:
            raise ValueError(f"language {lang!r} has no test text in {str(root)!r}: add a {lang}.test.txt file "
                             f"(or a {lang}/test/ folder) or more documents to hold out")
        if not kept:
            why = (f"its {n_docs} document(s) all went to the {test_tokens} held-out test tokens" if n_docs
                   else "no training documents")
            raise ValueError(f"language {lang!r} has no training text in {str(root)!r} ({why}); add text or "
                             "lower test_tokens")
        train[lang], test[lang] = encode_documents(kept), encode_documents(held)
        scripts[lang] = detect_script("\n".join(kept[:200]))
    return Corpus(train, test, scripts=scripts, families=families, path=str(root))


class WorldSource:
    """The synthetic world (:mod:`trainer.world`) as a text source, with an optional on-disk cache of
    generated text (``cache_dir``) so parallel workers and reruns do not regenerate it."""

    def __init__(self, world, *, cache_dir: str | Path | None = None):
        self.world = world
        self.langs = world.langs
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        import hashlib

        self._key = hashlib.sha1(repr(world.cfg).encode()).hexdigest()[:12]

    def available(self, lang: str) -> float:
        return math.inf

    def _tokens(self, lang: str, n: int, split: str) -> np.ndarray:
        if self.cache_dir is None:
            return self.world.tokens(lang, n, split=split)
        path = self.cache_dir / f"{self._key}-{lang}-{split}.npy"
        if path.exists():
            try:
                cached = np.load(path)
                if cached.size >= n:
                    return cached[:n]
            except (OSError, ValueError):
                pass
        tokens = self.world.tokens(lang, n, split=split)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{id(tokens)}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, tokens)
        tmp.replace(path)
        return tokens

    def train_tokens(self, lang: str, n: int) -> np.ndarray:
        return self._tokens(lang, n, "train")

    def test_tokens(self, lang: str, n: int) -> np.ndarray:
        return self._tokens(lang, n, "test")

    def metadata(self) -> dict[str, dict[str, Any]]:
        return self.world.metadata()

    def relatedness(self) -> dict[str, Any]:
        return self.world.relatedness()

    def describe(self) -> dict[str, Any]:
        import dataclasses

        cfg = dataclasses.asdict(self.world.cfg)
        return {"kind": "world", **cfg}


def open_source(cfg: DataConfig, *, max_train_tokens: Mapping[str, float] | float = math.inf,
                cache_dir: str | Path | None = None):
    """The text source a :class:`~trainer.config.DataConfig` names (world or corpus)."""
    if cfg.corpus is not None:
        return load_corpus(cfg.corpus, langs=cfg.langs, test_tokens=cfg.test_tokens, max_train_tokens=max_train_tokens,
                           glob=cfg.glob, families=dict(cfg.families))
    from trainer import world as world_lib

    w = world_lib.load_world(cfg.world, seed=cfg.world_seed)
    if cfg.langs is not None:
        unknown = [l for l in cfg.langs if l not in w.langs]
        if unknown:
            raise ValueError(f"[data] langs: {', '.join(map(repr, unknown))} not in the world; it has {', '.join(w.langs)}")
        import dataclasses

        specs = tuple(s for s in w.cfg.languages if s.code in cfg.langs)
        w = world_lib.World(dataclasses.replace(w.cfg, languages=specs))
    return WorldSource(w, cache_dir=cache_dir)
