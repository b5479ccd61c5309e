"""How the synthetic world's languages change along their family tree (used by :mod:`trainer.world`).

- Phonemes: 21 consonants and 6 vowels written as single characters (``c`` = tʃ); roots are
  ``(C)V`` syllables with an optional coda, drawn from a family's sound system (:func:`phonology`:
  which consonants and vowels it favours, a third of the consonants unused).
- A branch of length ``b`` (:func:`evolve`) redraws each root with probability
  ``1 - exp(-lexical_rate * b)`` (grammatical morphemes at half that rate), applies
  ``Poisson(sound_rate * b)`` regular sound changes to every form (:func:`sound_change`: consonant and
  vowel shifts, intervocalic lenition, apocope, final-consonant loss, palatalisation, nasal
  assimilation) and redraws each grammar parameter (:data:`GRAMMAR`) with probability
  ``1 - exp(-grammar_rate * b)``.

Everything is driven by the ``numpy`` generator it is given, so a world is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from typing import Any

import numpy as np

__all__ = ["CONSONANTS", "VOWELS", "GRAMMAR", "FUNCTION_MORPHEMES", "Lang", "stable_hash", "phonology", "root",
           "new_form", "sound_change", "evolve"]

CONSONANTS = "ptkbdgmnŋfvszʃhxlrjwc"  # c = tʃ
VOWELS = "aeiouə"
V_CLASS = f"[{VOWELS}]"
C_CLASS = f"[{CONSONANTS}]"

GRAMMAR: dict[str, tuple[str, ...]] = {
    "order": ("SVO", "SOV", "VSO"),
    "adj": ("pre", "post"),
    "plural": ("suffix", "prefix"),
    "tense": ("suffix", "prefix", "particle"),
    "neg": ("before", "after", "prefix"),
    "case": ("none", "suffix"),
    "det": ("pre", "post", "suffix"),
    "adp": ("pre", "post"),
}
FUNCTION_MORPHEMES = ("PL", "PAST", "FUT", "NEG", "ACC", "DEF", "LOC")

@dataclasses.dataclass(frozen=True)
class Lang:
    """The state of one node of the tree: forms of every morpheme, and the grammar."""

    lex: dict[str, str]
    grammar: dict[str, str]
    phonology: tuple[np.ndarray, np.ndarray, float]  # consonant weights, vowel weights, coda probability
    origin: dict[str, str]  # where each morpheme's current root was coined (its cognate set)


def stable_hash(*parts: Any) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


C_WEIGHTS = np.array([8, 9, 9, 4, 5, 4, 8, 9, 2, 3, 3, 8, 2, 2, 4, 2, 7, 6, 3, 3, 2], float)
V_WEIGHTS = np.array([0.3, 0.2, 0.2, 0.15, 0.12, 0.03])


def phonology(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """A family's sound system: which consonants and vowels it favours (a third of consonants unused)."""
    cw = C_WEIGHTS * rng.gamma(0.8, size=C_WEIGHTS.size) * (rng.random(C_WEIGHTS.size) > 0.33)
    vw = V_WEIGHTS * rng.gamma(1.5, size=V_WEIGHTS.size)
    return cw / cw.sum(), vw / vw.sum(), float(rng.uniform(0.0, 0.5))


def root(rng: np.random.Generator, syllables: int, phonology) -> str:
    cw, vw, coda = phonology
    out = []
    for _ in range(syllables):
        if rng.random() < 0.9:
            out.append(CONSONANTS[rng.choice(len(CONSONANTS), p=cw)])
        out.append(VOWELS[rng.choice(len(VOWELS), p=vw)])
    if rng.random() < coda:
        out.append(CONSONANTS[rng.choice(len(CONSONANTS), p=cw)])
    return "".join(out)


def new_form(rng: np.random.Generator, morpheme: str, phonology) -> str:
    if morpheme in FUNCTION_MORPHEMES:
        return root(rng, 1, phonology)
    return root(rng, int(rng.choice([1, 2, 3], p=[0.25, 0.55, 0.2])), phonology)


_SHIFTS = [("p", "f"), ("b", "v"), ("t", "s"), ("d", "z"), ("k", "x"), ("g", "k"), ("s", "h"), ("x", "h"),
           ("l", "r"), ("r", "l"), ("m", "n"), ("w", "v"), ("z", "r"), ("f", "h"), ("ʃ", "s"), ("c", "ʃ"), ("ŋ", "n")]
_VOWEL_SHIFTS = [("a", "e"), ("e", "i"), ("o", "u"), ("u", "o"), ("i", "e"), ("a", "o"), ("e", "a"), ("o", "a"),
                 ("ə", "e"), ("a", "ə")]
_LENITION = [("p", "b"), ("t", "d"), ("k", "g"), ("b", "v"), ("d", "z"), ("g", "j")]


def sound_change(rng: np.random.Generator):
    """One regular sound change as a function on phoneme strings."""
    kind = rng.choice(["shift", "vowel", "lenition", "apocope", "final_c", "palatal", "nasal"],
                      p=[0.3, 0.25, 0.15, 0.08, 0.08, 0.08, 0.06])
    if kind == "shift":
        a, b = _SHIFTS[rng.integers(len(_SHIFTS))]
        return lambda w: w.replace(a, b)
    if kind == "vowel":
        a, b = _VOWEL_SHIFTS[rng.integers(len(_VOWEL_SHIFTS))]
        if rng.random() < 0.5:
            return lambda w: w.replace(a, b)
        pat = re.compile(f"{a}$")  # word-final only
        return lambda w: pat.sub(b, w)
    if kind == "lenition":
        a, b = _LENITION[rng.integers(len(_LENITION))]
        pat = re.compile(f"(?<={V_CLASS}){a}(?={V_CLASS})")
        return lambda w: pat.sub(b, w)
    if kind == "apocope":
        pat = re.compile(f"(?<=.{{3}}){V_CLASS}$")
        return lambda w: pat.sub("", w)
    if kind == "final_c":
        pat = re.compile(f"(?<=.{{2}}){C_CLASS}$")
        return lambda w: pat.sub("", w)
    if kind == "palatal":
        a = ["k", "t", "s"][rng.integers(3)]
        b = {"k": "c", "t": "c", "s": "ʃ"}[a]
        pat = re.compile(f"{a}(?=[ie])")
        return lambda w: pat.sub(b, w)
    pat_m, pat_n = re.compile("n(?=[pb])"), re.compile("m(?=[tdsz])")
    return lambda w: pat_n.sub("n", pat_m.sub("m", w))


def evolve(parent: Lang, length: float, rng: np.random.Generator, *, lexical_rate: float, sound_rate: float,
           grammar_rate: float, where: str) -> Lang:
    """The daughter of ``parent`` after a branch of ``length``: lexical replacement, regular sound changes
    and grammar drift at the given rates per unit length (module docstring). ``where`` names the node
    (it marks the cognate set of every root coined there)."""
    lex, origin = dict(parent.lex), dict(parent.origin)
    p_lex = 1.0 - math.exp(-lexical_rate * length)
    p_fun = 1.0 - math.exp(-0.5 * lexical_rate * length)
    for m in sorted(lex):
        if rng.random() < (p_fun if m in FUNCTION_MORPHEMES else p_lex):
            lex[m] = new_form(rng, m, parent.phonology)
            origin[m] = where
    for _ in range(int(rng.poisson(sound_rate * length))):
        change = sound_change(rng)
        lex = {m: (change(f) or f) for m, f in lex.items()}
    grammar = dict(parent.grammar)
    p_gram = 1.0 - math.exp(-grammar_rate * length)
    for key, options in GRAMMAR.items():
        if rng.random() < p_gram:
            grammar[key] = str(rng.choice([o for o in options if o != grammar[key]]))
    return Lang(lex=lex, grammar=grammar, phonology=parent.phonology, origin=origin)
