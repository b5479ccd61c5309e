"""A synthetic multilingual world, deterministic from a seed, with known ground-truth relatedness.

Why: to check a scaling-law or transfer analysis, you need languages whose relatedness you *know*.
Here languages descend from a family tree, like real ones, and the text they produce carries the
same kind of signal a real corpus does, at a size a laptop can model.

How the world is made
---------------------
- **Meanings are shared.** One semantic model (concepts with Zipfian frequencies, noun classes,
  verbs that select their subjects and objects, document topics) generates what every language talks
  about, so what a model learns about the world in one language is true in all of them.
- **Forms descend from a tree.** Each family's proto-language has its own sound system (favoured
  consonants and vowels, syllable codas), a proto-lexicon (random CV(C) roots for every concept and
  grammatical morpheme) and a proto-grammar (word order, adjective and determiner placement, prefix or
  suffix plural and tense, case marking, negation, adpositions). Families are unrelated, as real
  language families are: their tree distance (twice the root-to-leaf length) is the largest there is.
  Each branch of length ``b`` below a family (family -> subfamily -> language) applies, independently
  per node:

  - lexical replacement: each root is redrawn with probability ``1 - exp(-rates.lexical * b)``
    (grammatical morphemes at half that rate);
  - regular sound changes: ``Poisson(rates.sound * b)`` rules (consonant shifts, intervocalic
    lenition, vowel shifts, apocope, final-consonant loss, palatalisation, nasal assimilation),
    each applied to every form, so cognates stay recognisably related;
  - grammar drift: each grammar parameter is redrawn with probability ``1 - exp(-rates.grammar * b)``.

  So languages that split later share more cognates, affixes and word order: byte n-gram overlap,
  and hence transfer, grows with relatedness (a test checks it).
- **Scripts.** Each language writes in ``Latn``, ``Cyrl``, ``Grek`` or ``Hani``. Alphabetic scripts
  spell phonemes with a fixed letter table per script (Greek with a final sigma), so same-script
  languages share surface symbols and cognates look alike; a different script hides cognacy from a
  byte-level model. ``Hani`` is logographic: one symbol per morpheme, the same symbol for cognate
  morphemes in every Hani language (as hanzi are shared across Chinese varieties and with Japanese),
  no spaces between words (a root replaced by a new word gets a new symbol). Personal names are shared loans, spelled per script; digits are shared by
  the alphabetic scripts.
- **Held-out text.** Training and test documents come from disjoint random streams.

Ground truth is exposed as :meth:`World.metadata` (script, family, subfamily, tree depth per language)
and :meth:`World.relatedness` (tree distance = summed branch lengths, shared script), which the trainer
writes into every cube's attrs (``language_metadata``, ``relatedness``).

World files (TOML)
------------------
::

    seed = 0
    parallel = false          # true: every language renders the same meanings (a parallel corpus)
    [tree]                    # branch lengths; leaves are equidistant from the root
    family = 3.0              # root -> family proto-language
    subfamily = 1.0           # family -> subfamily
    language = 0.5            # last node -> language
    [rates]                   # per unit of branch length
    lexical = 0.2
    sound = 1.0
    grammar = 0.15
    [languages.ama]
    family = "alpine"
    subfamily = "west"        # optional
    script = "Latn"           # Latn, Cyrl, Grek or Hani

The built-in ``default`` world (:data:`DEFAULT_LANGUAGES`) has 10 languages in 3 families and 4 scripts.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import SEP, check_keys, get_int, get_number, get_str
from trainer.language_change import (
    C_CLASS,
    CONSONANTS,
    FUNCTION_MORPHEMES,
    GRAMMAR,
    V_CLASS,
    VOWELS,
    C_WEIGHTS,
    V_WEIGHTS,
    Lang,
    evolve,
    new_form,
    phonology,
    root,
    stable_hash,
)

__all__ = ["SCRIPTS", "LanguageSpec", "WorldConfig", "World", "DEFAULT_LANGUAGES", "default_config", "load_world"]

SCRIPTS = ("Latn", "Cyrl", "Grek", "Hani")
NOUN_CLASSES = {"animate": 24, "object": 32, "food": 16, "place": 24}
N_NAMES, N_TRANSITIVE, N_INTRANSITIVE, N_ADJECTIVES, N_TOPICS = 16, 28, 12, 24, 6
DOCS_PER_CHUNK = 64

_LETTERS = {
    "Latn": dict(zip(CONSONANTS + VOWELS, "p t k b d g m n ng f v s z sh h kh l r y w ch a e i o u ë".split())),
    "Cyrl": dict(zip(CONSONANTS + VOWELS, "п т к б д г м н нг ф в с з ш х х л р й ў ч а е и о у ы".split())),
    "Grek": dict(zip(CONSONANTS + VOWELS, "π τ κ μπ ντ γκ μ ν γγ φ β σ ζ σι ϰ χ λ ρ γι ου τσ α ε ι ο υ η".split())),
}
_DIGITS = {"Latn": "0123456789", "Cyrl": "0123456789", "Grek": "0123456789", "Hani": "〇一二三四五六七八九"}


# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class LanguageSpec:
    """One language of a world: its code, place in the tree and script."""

    code: str
    family: str
    script: str
    subfamily: str = ""


DEFAULT_LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec("ama", "alpine", "Latn", "west"),
    LanguageSpec("ami", "alpine", "Latn", "west"),
    LanguageSpec("amo", "alpine", "Latn", "east"),
    LanguageSpec("amu", "alpine", "Cyrl", "east"),
    LanguageSpec("bel", "boreal", "Cyrl", "inland"),
    LanguageSpec("bor", "boreal", "Cyrl", "inland"),
    LanguageSpec("bun", "boreal", "Latn", "coast"),
    LanguageSpec("cai", "coastal", "Hani", "isle"),
    LanguageSpec("cen", "coastal", "Hani", "isle"),
    LanguageSpec("cyo", "coastal", "Grek", "main"),
)


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """A world's languages, tree branch lengths and change rates (see the module docstring)."""

    languages: tuple[LanguageSpec, ...] = DEFAULT_LANGUAGES
    seed: int = 0
    parallel: bool = False
    family_length: float = 3.0
    subfamily_length: float = 1.0
    language_length: float = 0.5
    lexical_rate: float = 0.2
    sound_rate: float = 1.0
    grammar_rate: float = 0.15

    def __post_init__(self):
        if not self.languages:
            raise ValueError("a world needs at least one language")
        codes = [l.code for l in self.languages]
        dups = sorted({c for c in codes if codes.count(c) > 1})
        if dups:
            raise ValueError(f"duplicate language code(s) in world: {', '.join(dups)}")
        for l in self.languages:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", l.code):
                raise ValueError(f"language code {l.code!r} must be letters, digits, '-' or '_', starting with a letter")
            if l.script not in SCRIPTS:
                raise ValueError(f"language {l.code!r}: script {l.script!r} is not one of {', '.join(SCRIPTS)}")
            if not l.family:
                raise ValueError(f"language {l.code!r} needs a family")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "world file") -> WorldConfig:
        check_keys(table, ("seed", "parallel", "tree", "rates", "languages"), where)
        tree, rates = table.get("tree", {}), table.get("rates", {})
        check_keys(tree, ("family", "subfamily", "language"), f"{where} [tree]")
        check_keys(rates, ("lexical", "sound", "grammar"), f"{where} [rates]")
        langs = table.get("languages", {})
        check_keys(langs, list(langs), f"{where} [languages]")
        specs = []
        for code, spec in langs.items():
            w = f"{where} [languages.{code}]"
            check_keys(spec, ("family", "subfamily", "script"), w)
            family = get_str(spec, "family", None, w)
            if family is None:
                raise ValueError(f"{w} needs family = \"...\"")
            script = get_str(spec, "script", None, w, choices=SCRIPTS)
            if script is None:
                raise ValueError(f"{w} needs script = one of {', '.join(SCRIPTS)}")
            specs.append(LanguageSpec(code, family, script, get_str(spec, "subfamily", "", w)))
        if not specs:
            raise ValueError(f"{where} defines no languages: add [languages.<code>] tables")
        parallel = table.get("parallel", False)
        if not isinstance(parallel, bool):
            raise ValueError(f"{where}: parallel must be true or false, got {parallel!r}")
        d = cls()
        return cls(
            languages=tuple(specs),
            seed=get_int(table, "seed", 0, where, lo=0),
            parallel=parallel,
            family_length=get_number(tree, "family", d.family_length, f"{where} [tree]", lo=0.0),
            subfamily_length=get_number(tree, "subfamily", d.subfamily_length, f"{where} [tree]", lo=0.0),
            language_length=get_number(tree, "language", d.language_length, f"{where} [tree]", lo=0.0),
            lexical_rate=get_number(rates, "lexical", d.lexical_rate, f"{where} [rates]", lo=0.0),
            sound_rate=get_number(rates, "sound", d.sound_rate, f"{where} [rates]", lo=0.0),
            grammar_rate=get_number(rates, "grammar", d.grammar_rate, f"{where} [rates]", lo=0.0),
        )


def default_config(seed: int = 0) -> WorldConfig:
    """The built-in world: 10 languages, families alpine/boreal/coastal, scripts Latn/Cyrl/Grek/Hani."""
    return WorldConfig(seed=seed)


def load_world(spec: str | Path = "default", *, seed: int | None = None) -> World:
    """A :class:`World` from ``"default"`` or a world TOML file; ``seed`` overrides the file's seed."""
    if str(spec) == "default":
        cfg = default_config(0 if seed is None else seed)
    else:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"world file {str(path)!r} not found (use world = \"default\" for the built-in world)")
        with open(path, "rb") as f:
            try:
                table = tomllib.load(f)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"world file {str(path)!r} is not valid TOML: {err}") from None
        cfg = WorldConfig.from_table(table, where=f"world file {path.name!r}")
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=seed)
    return World(cfg)


# ----------------------------------------------------------------------------- the world


class World:
    """The languages of a :class:`WorldConfig`: their forms, grammar, text and ground-truth relatedness.

    Text is generated in chunks of 64 documents, each chunk seeded by ``(seed, language, split, chunk)``,
    so the first ``n`` tokens of a language do not depend on how many more are asked for, nor on the
    other languages of the world (unless ``parallel``, when meanings are shared by all languages).
    """

    def __init__(self, cfg: WorldConfig):
        self.cfg = cfg
        self.langs: tuple[str, ...] = tuple(l.code for l in cfg.languages)
        self._specs = {l.code: l for l in cfg.languages}
        self._build_semantics()
        self._nodes: dict[tuple[str, ...], Lang] = {}
        self._chunks: dict[tuple[str, int, int], np.ndarray] = {}
        self._renderers = {code: self._renderer(code) for code in self.langs}

    # -- semantics shared by every language
    def _build_semantics(self) -> None:
        rng = np.random.default_rng([self.cfg.seed, stable_hash("semantics")])
        nouns, self.noun_class = [], {}
        for cls, n in NOUN_CLASSES.items():
            for i in range(n):
                m = f"n_{cls}{i}"
                nouns.append(m)
                self.noun_class[m] = cls
        self.nouns = nouns
        self.names = [f"name{i}" for i in range(N_NAMES)]
        self.verbs_tr = [f"vt{i}" for i in range(N_TRANSITIVE)]
        self.verbs_in = [f"vi{i}" for i in range(N_INTRANSITIVE)]
        self.adjectives = [f"adj{i}" for i in range(N_ADJECTIVES)]
        self.content = nouns + self.verbs_tr + self.verbs_in + self.adjectives

        def zipf(n):
            w = 1.0 / (1.0 + rng.permutation(n))
            return w / w.sum()

        self.obj_class = {v: str(rng.choice(["object", "food", "animate", "object", "food"])) for v in self.verbs_tr}
        self.adj_classes = {a: set(rng.choice(list(NOUN_CLASSES), size=2, replace=False)) for a in self.adjectives}
        self.nouns_of = {cls: [n for n in nouns if self.noun_class[n] == cls] for cls in NOUN_CLASSES}
        self.adjectives_of = {cls: [a for a in self.adjectives if cls in self.adj_classes[a]] or self.adjectives
                              for cls in NOUN_CLASSES}
        base = {cls: zipf(n) for cls, n in NOUN_CLASSES.items()}
        self.topic_nouns = {}
        for t in range(N_TOPICS):
            for cls, n in NOUN_CLASSES.items():
                boost = np.where(rng.random(n) < 0.3, 6.0, 1.0)
                w = base[cls] * boost
                self.topic_nouns[t, cls] = np.cumsum(w / w.sum())
        vbase = zipf(N_TRANSITIVE + N_INTRANSITIVE)
        self.topic_verbs = []
        for t in range(N_TOPICS):
            w = vbase * np.where(rng.random(vbase.size) < 0.3, 4.0, 1.0)
            self.topic_verbs.append(np.cumsum(w / w.sum()))
        self.adj_cdf = np.cumsum(zipf(N_ADJECTIVES))
        self.name_cdf = np.cumsum(zipf(N_NAMES))
        name_rng = np.random.default_rng([self.cfg.seed, stable_hash("names")])
        neutral = (C_WEIGHTS / C_WEIGHTS.sum(), V_WEIGHTS, 0.25)
        self.name_forms = {m: root(name_rng, 2 + int(name_rng.integers(2)), neutral) for m in self.names}

    # -- the tree
    def _path(self, code: str) -> tuple[str, ...]:
        s = self._specs[code]
        return ("root", f"family:{s.family}") + ((f"sub:{s.subfamily}",) if s.subfamily else ()) + (f"lang:{code}",)

    def _branch_length(self, path: tuple[str, ...]) -> float:
        """Length of the branch into the last node of ``path``; every leaf ends up equally far from the root."""
        cfg, last = self.cfg, path[-1]
        if last.startswith("family:"):
            return cfg.family_length
        if last.startswith("sub:"):
            return cfg.subfamily_length
        return cfg.language_length + (cfg.subfamily_length if len(path) == 3 else 0.0)

    def _node(self, path: tuple[str, ...]) -> Lang:
        if path in self._nodes:
            return self._nodes[path]
        if len(path) == 2:  # a family's proto-language: its own sound system, lexicon and grammar
            rng = np.random.default_rng([self.cfg.seed, stable_hash(*path)])
            sounds = phonology(rng)
            lex = {m: new_form(rng, m, sounds) for m in self.content + list(FUNCTION_MORPHEMES)}
            grammar = {k: str(rng.choice(v)) for k, v in GRAMMAR.items()}
            node = Lang(lex=lex, grammar=grammar, phonology=sounds, origin={m: path[-1] for m in lex})
        else:
            # Seeded by the whole path: two families may both have a subfamily called "east".
            rng = np.random.default_rng([self.cfg.seed, stable_hash(*path)])
            cfg = self.cfg
            node = evolve(self._node(path[:-1]), self._branch_length(path), rng, lexical_rate=cfg.lexical_rate,
                          sound_rate=cfg.sound_rate, grammar_rate=cfg.grammar_rate, where="/".join(path))
        self._nodes[path] = node
        return node

    def grammar(self, lang: str) -> dict[str, str]:
        """The grammar parameters of ``lang`` (word order, affix positions...)."""
        return dict(self._node(self._path(lang)).grammar)

    def lexicon(self, lang: str) -> dict[str, str]:
        """Phonemic form of every morpheme of ``lang``."""
        return dict(self._node(self._path(lang)).lex)

    def tree_distance(self, a: str, b: str) -> float:
        """Summed branch lengths between two languages (0 for a language and itself)."""
        pa, pb = self._path(a), self._path(b)
        k = 0
        while k < min(len(pa), len(pb)) and pa[k] == pb[k]:
            k += 1
        return float(sum(self._branch_length(pa[:i + 1]) for i in range(k, len(pa)))
                     + sum(self._branch_length(pb[:i + 1]) for i in range(k, len(pb))))

    def metadata(self) -> dict[str, dict[str, Any]]:
        """``{lang: {"script", "family", "subfamily", "tree_depth"}}`` (CONTRACTS "Language metadata")."""
        return {c: {"script": s.script, "family": s.family, "subfamily": s.subfamily,
                    "tree_depth": len(self._path(c)) - 1} for c, s in self._specs.items()}

    def relatedness(self, langs: Sequence[str] | None = None) -> dict[str, Any]:
        """Ground truth: ``{"langs", "tree_distance" (square), "shared_script" (0/1)}`` in ``langs`` order."""
        langs = list(self.langs if langs is None else langs)
        return {
            "langs": langs,
            "tree_distance": [[self.tree_distance(a, b) for b in langs] for a in langs],
            "shared_script": [[int(self._specs[a].script == self._specs[b].script) for b in langs] for a in langs],
        }

    # -- writing
    def _renderer(self, lang: str):
        spec = self._specs[lang]
        node = self._node(self._path(lang))
        script = spec.script
        if script == "Hani":
            # One symbol per morpheme: cognates share it across Hani languages, a replaced root gets a new one.
            forms = {m: chr(0x4E00 + stable_hash(m, node.origin[m]) % 0x5000) for m in node.lex}
            for m, f in self.name_forms.items():  # names: one symbol per syllable
                syllables = re.findall(f"{C_CLASS}*{V_CLASS}+|{C_CLASS}+$", f)
                forms[m] = "".join(chr(0x5800 + stable_hash(s) % 2000) for s in syllables)
        else:
            letters = _LETTERS[script]
            forms = {m: "".join(letters[p] for p in f) for m, f in node.lex.items()}
            forms.update({m: "".join(letters[p] for p in f) for m, f in self.name_forms.items()})
        return forms

    def render(self, lang: str, meaning: dict) -> str:
        """One sentence of ``lang`` expressing ``meaning`` (see :meth:`_meaning`)."""
        g = self._node(self._path(lang)).grammar
        f = self._renderers[lang]
        script = self._specs[lang].script
        digits = _DIGITS[script]

        def affix(word: str, morpheme: str, position: str) -> str:
            return f[morpheme] + word if position == "prefix" else word + f[morpheme]

        def np_words(np_: dict, acc: bool) -> list[str]:
            head = np_["head"]
            word = f[head]
            if np_.get("plural"):
                word = affix(word, "PL", g["plural"])
            if np_.get("definite") and g["det"] == "suffix":
                word = word + f["DEF"]
            if acc and g["case"] == "suffix":
                word = word + f["ACC"]
            words = [word]
            if np_.get("adj"):
                words = [f[np_["adj"]]] + words if g["adj"] == "pre" else words + [f[np_["adj"]]]
            if np_.get("number"):
                words = [digits[np_["number"]]] + words
            if np_.get("definite") and g["det"] in ("pre", "post"):
                words = [f["DEF"]] + words if g["det"] == "pre" else words + [f["DEF"]]
            return words

        verb = f[meaning["verb"]]
        extra: list[str] = []
        if meaning["tense"]:
            if g["tense"] == "particle":
                extra.append(f[meaning["tense"]])
            else:
                verb = affix(verb, meaning["tense"], g["tense"])
        if meaning["neg"]:
            if g["neg"] == "prefix":
                verb = f["NEG"] + verb
            elif g["neg"] == "before":
                extra.append(f["NEG"])
        vp = extra + [verb] + ([f["NEG"]] if meaning["neg"] and g["neg"] == "after" else [])
        subj = np_words(meaning["subj"], acc=False)
        obj = np_words(meaning["obj"], acc=True) if meaning["obj"] else []
        pp: list[str] = []
        if meaning["place"]:
            place = np_words(meaning["place"], acc=False)
            pp = [f["LOC"]] + place if g["adp"] == "pre" else place + [f["LOC"]]
        order = g["order"]
        if order == "SVO":
            words = subj + vp + obj + pp
        elif order == "SOV":
            words = subj + pp + obj + vp
        else:
            words = vp + subj + obj + pp
        if script == "Hani":
            return "".join(words) + "。"
        text = " ".join(words) + "."
        if script == "Grek":
            text = re.sub("σ(?=[ .])", "ς", text)
        return text[0].upper() + text[1:]

    def _meaning(self, rng: np.random.Generator, topic: int) -> dict:
        r = rng.random(14)

        def noun(cls: str, u: float) -> str:
            nouns = self.nouns_of[cls]
            return nouns[min(int(np.searchsorted(self.topic_nouns[topic, cls], u)), len(nouns) - 1)]

        def noun_phrase(cls: str, a: float, b: float, c: float, d: float) -> dict:
            head = noun(cls, a)
            np_: dict[str, Any] = {"head": head, "plural": b < 0.3, "definite": c < 0.5}
            if d < 0.3:
                cands = self.adjectives_of[cls]
                np_["adj"] = cands[int(d / 0.3 * len(cands)) % len(cands)]
            if np_["plural"] and b < 0.06:
                np_["number"] = 2 + int(b / 0.06 * 8) % 8
            return np_

        vi = min(int(np.searchsorted(self.topic_verbs[topic], r[0])), N_TRANSITIVE + N_INTRANSITIVE - 1)
        if r[1] < 0.3:
            name = self.names[min(int(np.searchsorted(self.name_cdf, r[2])), N_NAMES - 1)]
            subj = {"head": name}
        else:
            subj = noun_phrase("animate", r[2], r[3], r[4], r[5])
        if vi < N_TRANSITIVE:
            verb = self.verbs_tr[vi]
            obj = noun_phrase(self.obj_class[verb], r[6], r[7], r[8], r[9])
        else:
            verb, obj = self.verbs_in[vi - N_TRANSITIVE], None
        tense = "PAST" if r[10] < 0.3 else ("FUT" if r[10] < 0.5 else None)
        place = noun_phrase("place", r[12], 1.0, r[13], 1.0) if r[11] < 0.25 else None
        return {"verb": verb, "subj": subj, "obj": obj, "tense": tense, "neg": r[13] < 0.15, "place": place}

    def documents(self, lang: str, *, split: str = "train", chunk: int = 0) -> list[str]:
        """The 64 documents of one chunk of ``lang``'s ``"train"`` or ``"test"`` text."""
        if lang not in self._specs:
            raise ValueError(f"language {lang!r} is not in this world; its languages are {', '.join(self.langs)}")
        who = "all" if self.cfg.parallel else lang
        rng = np.random.default_rng([self.cfg.seed, stable_hash(who), {"train": 0, "test": 1}[split], chunk])
        docs = []
        for _ in range(DOCS_PER_CHUNK):
            topic = int(rng.integers(N_TOPICS))
            n = int(rng.integers(2, 9))
            sep = "" if self._specs[lang].script == "Hani" else " "
            docs.append(sep.join(self.render(lang, self._meaning(rng, topic)) for _ in range(n)))
        return docs

    def _chunk_tokens(self, lang: str, split: str, chunk: int) -> np.ndarray:
        key = (lang, {"train": 0, "test": 1}[split], chunk)
        if key not in self._chunks:
            parts = []
            for doc in self.documents(lang, split=split, chunk=chunk):
                parts.append(np.frombuffer(doc.encode("utf-8"), dtype=np.uint8).astype(np.uint16))
                parts.append(np.array([SEP], dtype=np.uint16))
            self._chunks[key] = np.concatenate(parts)
        return self._chunks[key]

    def tokens(self, lang: str, n: int, *, split: str = "train") -> np.ndarray:
        """The first ``n`` tokens (UTF-8 bytes, ``SEP`` between documents) of ``lang``'s ``split`` text."""
        out, total, chunk = [], 0, 0
        while total < n:
            t = self._chunk_tokens(lang, split, chunk)
            out.append(t)
            total += t.size
            chunk += 1
        return np.concatenate(out)[:n] if out else np.zeros(0, np.uint16)

    def sample(self, lang: str, chars: int = 200) -> str:
        """The start of ``lang``'s first training document, for people to look at."""
        return self.documents(lang, chunk=0)[0][:chars]
