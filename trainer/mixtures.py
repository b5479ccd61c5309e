"""Training mixtures: which languages a run samples, with which weights.

Kinds (SPEC section 5 and Chung et al. 2023):

- ``monolingual``   one language.
- ``bilingual``     two languages, 50/50.
- ``uniform``       ``K`` languages, ``1/K`` each.
- ``unimax``        uniform, but no language repeated more than ``max_epochs`` times over its unique
                    tokens ``U``: languages that would exceed the cap get exactly ``max_epochs * U``
                    tokens and the rest of the budget is shared uniformly by the others (Chung et al.
                    2023, "UniMax"). Computed for the job's largest token budget, so every branch of a
                    D-sweep (all smaller) respects the cap.
- ``temperature``   ``p_l proportional to n_l^(1/tau)`` over natural sizes ``n_l`` (``tau = 1`` follows the
                    data, ``tau -> inf`` is uniform).
- ``weights``       explicit weights (normalised to sum to 1).

In a sweep file each mixture is an inline table with one kind key (see :func:`parse`)::

    { monolingual = "ama" }                 { monolingual = "each" }        # one mixture per language
    { bilingual = ["ama", "bor"] }          { bilingual = "ama", with = "each" }  # ama with each other
    { bilingual = "pairs", langs = ["ama", "ami", "bor"] }                  # every unordered pair
    { uniform = "all" }                     { uniform = ["ama", "bor", "cai", "cyo"], k = [1, 2, 4] }  # prefixes
    { unimax = "all", max_epochs = 4 }      { temperature = "all", tau = 3.0, sizes = { ama = 1e6 } }
    { weights = { ama = 0.7, bor = 0.3 } }
    # any of them may add  name = "my-mix"

:func:`resolve` turns a :class:`Mixture` into weights once the token budget and ``U`` are known.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from trainer.config import check_keys, get_number

__all__ = ["Mixture", "KINDS", "monolingual", "bilingual", "uniform", "unimax", "temperature", "explicit",
           "parse", "resolve"]

KINDS = ("monolingual", "bilingual", "uniform", "unimax", "temperature", "weights")
Kind = Literal["monolingual", "bilingual", "uniform", "unimax", "temperature", "weights"]


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A mixture before its weights are resolved: kind, languages and kind-specific options."""

    kind: Kind
    langs: tuple[str, ...]
    name: str
    max_epochs: float = math.inf  # unimax
    tau: float = 1.0  # temperature
    sizes: tuple[tuple[str, float], ...] = ()  # temperature: natural sizes (default: U, else corpus size)
    weights: tuple[tuple[str, float], ...] = ()  # explicit


# ----------------------------------------------------------------------------- weight functions


def monolingual(lang: str) -> dict[str, float]:
    return {lang: 1.0}


def bilingual(a: str, b: str) -> dict[str, float]:
    if a == b:
        raise ValueError(f"a bilingual mixture needs two different languages; got {a!r} twice")
    return {a: 0.5, b: 0.5}


def uniform(langs: Sequence[str]) -> dict[str, float]:
    return {l: 1.0 / len(langs) for l in langs}


def unimax(langs: Sequence[str], *, budget: float, unique: Mapping[str, float], max_epochs: float) -> dict[str, float]:
    """UniMax weights for a run of ``budget`` tokens: uniform, capped at ``max_epochs * U`` per language."""
    remaining, alloc = float(budget), {}
    order = sorted(langs, key=lambda l: (unique.get(l, math.inf), l))
    for i, l in enumerate(order):
        share = remaining / (len(order) - i)
        alloc[l] = min(share, max_epochs * unique.get(l, math.inf))
        remaining -= alloc[l]
    if remaining > 1e-9 * budget:
        cap = sum(max_epochs * unique.get(l, math.inf) for l in langs)
        raise ValueError(f"unimax over {', '.join(langs)}: max_epochs={max_epochs:g} x U gives at most {cap:.4g} "
                         f"tokens, less than the budget D={budget:.4g}; raise max_epochs or the U budgets")
    return {l: alloc[l] / budget for l in langs}


def temperature(sizes: Mapping[str, float], *, tau: float) -> dict[str, float]:
    """``p_l proportional to sizes[l] ** (1 / tau)``."""
    bad = {l: n for l, n in sizes.items() if not (n > 0 and math.isfinite(n))}
    if bad:
        raise ValueError(f"temperature sampling needs a finite positive size for every language; got {bad} "
                         "(give sizes = {lang = tokens, ...} or finite U budgets)")
    raw = {l: float(n) ** (1.0 / tau) for l, n in sizes.items()}
    total = sum(raw.values())
    return {l: v / total for l, v in raw.items()}


def explicit(weights: Mapping[str, float]) -> dict[str, float]:
    bad = {l: w for l, w in weights.items() if not (isinstance(w, (int, float)) and w >= 0 and math.isfinite(w))}
    if bad or not any(w > 0 for w in weights.values()):
        raise ValueError(f"explicit mixture weights must be finite, >= 0 and not all 0; got {dict(weights)}")
    total = float(sum(weights.values()))
    return {l: float(w) / total for l, w in weights.items() if w > 0}


def resolve(mix: Mixture, *, budget: float, unique: Mapping[str, float],
            available: Mapping[str, float]) -> dict[str, float]:
    """Weights of ``mix`` for a job whose largest budget is ``budget`` tokens.

    ``unique`` is the U budget per language (``inf`` = unconstrained); ``available`` the tokens the data
    holds per language (``inf`` for a synthetic world), used for temperature sizes when neither
    ``sizes`` nor a finite U is given.
    """
    if mix.kind == "monolingual":
        return monolingual(mix.langs[0])
    if mix.kind == "bilingual":
        return bilingual(*mix.langs)
    if mix.kind == "uniform":
        return uniform(mix.langs)
    if mix.kind == "unimax":
        return unimax(mix.langs, budget=budget, unique=unique, max_epochs=mix.max_epochs)
    if mix.kind == "temperature":
        given = dict(mix.sizes)
        sizes = {l: given.get(l, unique.get(l, math.inf) if math.isfinite(unique.get(l, math.inf))
                     else available.get(l, math.inf)) for l in mix.langs}
        return temperature(sizes, tau=mix.tau)
    return explicit(dict(mix.weights))


# ----------------------------------------------------------------------------- parsing


def _langs(value: Any, all_langs: Sequence[str], where: str, what: str) -> list[str]:
    if value == "all":
        return list(all_langs)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) for v in items):
        raise ValueError(f"{where}: {what} must be a language, a list of languages or \"all\"; got {value!r}")
    unknown = [l for l in items if l not in all_langs]
    if unknown:
        raise ValueError(f"{where}: unknown language{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                         f"the data has {', '.join(all_langs)}")
    dups = sorted({l for l in items if items.count(l) > 1})
    if dups:
        raise ValueError(f"{where}: language{'s' * (len(dups) > 1)} {', '.join(map(repr, dups))} listed twice")
    return list(items)


def parse(spec: Mapping[str, Any], all_langs: Sequence[str], where: str) -> list[Mixture]:
    """The mixtures of one sweep-file entry (an entry may expand to several, e.g. ``"each"``)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be an inline table such as {{ monolingual = \"{all_langs[0]}\" }}; got {spec!r}")
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise ValueError(f"{where} must have exactly one of the keys {', '.join(KINDS)}; got {', '.join(spec) or 'none'}")
    kind = kinds[0]
    options = {"monolingual": ("name",), "bilingual": ("with", "langs", "name"), "uniform": ("k", "name"),
               "unimax": ("max_epochs", "name"), "temperature": ("tau", "sizes", "name"), "weights": ("name",)}
    check_keys(spec, (kind,) + options[kind], where)
    value, name = spec[kind], spec.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{where}.name must be a string, got {name!r}")

    def named(default: str) -> str:
        return name or default

    if kind == "monolingual":
        langs = _langs(list(all_langs) if value == "each" else value, all_langs, where, "monolingual")
        if name and len(langs) > 1:
            raise ValueError(f"{where}: name cannot be given for several monolingual mixtures")
        return [Mixture("monolingual", (l,), named(f"mono:{l}")) for l in langs]
    if kind == "bilingual":
        if value == "pairs":
            langs = _langs(spec.get("langs", "all"), all_langs, where, "langs")
            pairs = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]
        elif "with" in spec:
            if not isinstance(value, str):
                raise ValueError(f"{where}: with = ... needs bilingual = \"<one language>\"; got {value!r}")
            (a,) = _langs(value, all_langs, where, "bilingual")
            others = [l for l in all_langs if l != a] if spec["with"] == "each" else _langs(spec["with"], all_langs, where, "with")
            pairs = [(a, b) for b in others]
        else:
            langs = _langs(value, all_langs, where, "bilingual")
            if len(langs) != 2:
                raise ValueError(f"{where}: bilingual needs exactly two languages; got {langs}")
            pairs = [tuple(langs)]
        for a, b in pairs:
            bilingual(a, b)
        if name and len(pairs) > 1:
            raise ValueError(f"{where}: name cannot be given for several bilingual mixtures")
        return [Mixture("bilingual", (a, b), named(f"bi:{a}+{b}")) for a, b in pairs]
    if kind == "uniform":
        langs = _langs(value, all_langs, where, "uniform")
        ks = spec.get("k", [len(langs)])
        ks = [ks] if isinstance(ks, int) else ks
        if not isinstance(ks, list) or not all(isinstance(k, int) and 1 <= k <= len(langs) for k in ks):
            raise ValueError(f"{where}.k must be integers in 1..{len(langs)} (prefixes of the language list); got {spec.get('k')!r}")
        if name and len(ks) > 1:
            raise ValueError(f"{where}: name cannot be given for several uniform mixtures")
        return [Mixture("uniform", tuple(langs[:k]), named(f"uni{k}:" + "+".join(langs[:k]))) for k in ks]
    if kind == "unimax":
        langs = _langs(value, all_langs, where, "unimax")
        cap = get_number(spec, "max_epochs", math.inf, where, lo=0.0, lo_open=True)
        return [Mixture("unimax", tuple(langs), named(f"unimax{cap:g}:" + "+".join(langs)), max_epochs=cap)]
    if kind == "temperature":
        langs = _langs(value, all_langs, where, "temperature")
        tau = get_number(spec, "tau", 1.0, where, lo=0.0, lo_open=True)
        sizes = spec.get("sizes", {})
        check_keys(sizes, langs, f"{where}.sizes")
        for l in sizes:
            get_number(sizes, l, 1.0, f"{where}.sizes", lo=0.0, lo_open=True)
        return [Mixture("temperature", tuple(langs), named(f"temp{tau:g}:" + "+".join(langs)), tau=tau,
                        sizes=tuple(sorted((l, float(v)) for l, v in sizes.items())))]
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{where}: weights must be a table {{lang = weight, ...}}; got {value!r}")
    langs = _langs(list(value), all_langs, where, "weights")
    w = explicit({l: value[l] for l in langs})
    label = "+".join(f"{l}{w[l]:.3g}" for l in langs if l in w)
    return [Mixture("weights", tuple(l for l in langs if l in w), named(f"w:{label}"),
                    weights=tuple((l, w[l]) for l in langs if l in w))]
