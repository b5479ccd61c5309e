"""Language metadata: script and family of each language, and the pair features built from them.

Where the facts come from, in order: a run cube's ``attrs["language_metadata"]`` (the trainer writes
``{lang: {"script", "family", "subfamily", "tree_depth"}}`` for its synthetic world, and
``attrs["relatedness"]`` with the world's tree distances), then the shipped table
``atlas_bayes/data/languages.csv`` (``lang, name, script, family, subfamily`` for the ATLAS paper's 38
languages and some 40 more; ISO 639 codes, ISO 15924 script codes). An empty family means unknown
and never counts as shared.

Pair features, ``(n, n)`` arrays over a list of languages (row = target, column = source):
``shared_script``, ``shared_family``, ``shared_subfamily`` (1 when both are known and equal) and,
when the cube carries the synthetic world's tree, ``relatedness = 1 - d / max(d)`` of the tree
distance ``d``. :func:`similarity` folds them into one number in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib.resources import files

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["COLUMNS", "FEATURES", "table", "metadata", "pair_features", "similarity", "tree_relatedness"]

COLUMNS = ("script", "family", "subfamily")
FEATURES = ("shared_script", "shared_family", "shared_subfamily", "relatedness")


@lru_cache(maxsize=1)
def _shipped() -> pd.DataFrame:
    df = pd.read_csv(files("atlas_bayes") / "data" / "languages.csv", dtype=str, keep_default_na=False)
    return df.set_index("lang")


def table() -> pd.DataFrame:
    """The shipped metadata table, indexed by language code (a copy)."""
    return _shipped().copy()


def metadata(
    langs: Sequence[str],
    *,
    cube: xr.Dataset | None = None,
    extra: pd.DataFrame | Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Script, family and subfamily of each of ``langs``: the cube's attrs first, then ``extra``
    (a table or mapping given by the caller), then the shipped table.

    Raises ``ValueError`` naming the languages found nowhere.

    Examples
    --------
    >>> metadata(["en", "ru"])[["script", "family"]].to_dict("index")["ru"]
    {'script': 'Cyrl', 'family': 'Indo-European'}
    """
    sources: list[tuple[str, Mapping[str, Mapping[str, str]]]] = []
    if cube is not None and isinstance(cube.attrs.get("language_metadata"), Mapping):
        sources.append(("cube attrs", cube.attrs["language_metadata"]))
    if extra is not None:
        sources.append(("given table", extra.to_dict("index") if isinstance(extra, pd.DataFrame) else extra))
    sources.append(("languages.csv", _shipped().to_dict("index")))
    rows, missing = {}, []
    for lang in langs:
        for where, meta in sources:
            if lang in meta:
                entry = meta[lang]
                rows[lang] = {c: str(entry.get(c, "") or "") for c in COLUMNS} | {"from": where}
                break
        else:
            missing.append(lang)
    if missing:
        raise ValueError(
            f"no script/family metadata for language(s) {missing}: not in the cube's attrs['language_metadata'] "
            "nor in atlas_bayes/data/languages.csv; add them to either (columns lang, name, script, family, subfamily)"
        )
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "lang"
    return out


def _shared(values: Sequence[str]) -> np.ndarray:
    v = np.asarray([str(x) for x in values], dtype=object)
    known = v != ""
    return ((v[:, None] == v[None, :]) & known[:, None] & known[None, :]).astype(float)


def tree_relatedness(langs: Sequence[str], cube: xr.Dataset | None) -> np.ndarray | None:
    """``1 - d / max(d)`` from ``cube.attrs["relatedness"]["tree_distance"]``, or ``None`` if absent.

    Raises ``ValueError`` if the cube's tree lacks some of ``langs``.
    """
    rel = None if cube is None else cube.attrs.get("relatedness")
    if not isinstance(rel, Mapping) or "tree_distance" not in rel:
        return None
    order = [str(x) for x in rel["langs"]]
    missing = [lang for lang in langs if lang not in order]
    if missing:
        raise ValueError(f"cube.attrs['relatedness'] has no tree distance for language(s) {missing}; it covers {order}")
    full = np.asarray(rel["tree_distance"], dtype=float)
    idx = [order.index(lang) for lang in langs]
    d = full[np.ix_(idx, idx)]
    top = full.max()  # the whole tree's largest distance, so a subset keeps the same scale
    return 1.0 - d / top if top > 0 else np.ones_like(d)


def pair_features(
    langs: Sequence[str],
    *,
    features: Sequence[str] = ("shared_script", "shared_family"),
    cube: xr.Dataset | None = None,
    meta: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """``{feature: (n, n) array}`` for the language pairs of ``langs`` (see the module docstring).

    ``relatedness`` needs the cube's tree (``attrs["relatedness"]``); the other features need
    metadata (:func:`metadata`, computed from ``cube`` if ``meta`` is not given).
    """
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown pair feature(s) {unknown}; valid: {', '.join(FEATURES)}")
    langs = list(langs)
    out: dict[str, np.ndarray] = {}
    if any(f != "relatedness" for f in features):
        meta = metadata(langs, cube=cube) if meta is None else meta.loc[langs]
    for f in features:
        if f == "relatedness":
            rel = tree_relatedness(langs, cube)
            if rel is None:
                raise ValueError(
                    "feature 'relatedness' needs the synthetic world's tree distances in cube.attrs['relatedness']; "
                    "this cube has none (use shared_script / shared_family / shared_subfamily)"
                )
            out[f] = rel
        else:
            out[f] = _shared(meta[f.removeprefix("shared_")].tolist())
    return out


def similarity(langs: Sequence[str], *, cube: xr.Dataset | None = None) -> np.ndarray:
    """How related each pair of ``langs`` is, in [0, 1] (1 on the diagonal).

    The synthetic world's tree when the cube has it (:func:`tree_relatedness`), else the mean of
    ``shared_script``, ``shared_family`` and ``shared_subfamily`` from :func:`metadata`.
    """
    rel = tree_relatedness(langs, cube)
    if rel is not None:
        return rel
    f = pair_features(langs, features=("shared_script", "shared_family", "shared_subfamily"), cube=cube)
    sim = (f["shared_script"] + f["shared_family"] + f["shared_subfamily"]) / 3.0
    np.fill_diagonal(sim, 1.0)
    return sim
