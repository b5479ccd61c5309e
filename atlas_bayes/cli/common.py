"""Helpers shared by the ``atlas`` verbs: JSON output, tables, parsing of ``--mix``-style flags."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["emit_json", "print_table", "print_predictions", "parse_assignments", "fmt_num", "add_json_flag", "add_level_flag"]


def _default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def emit_json(obj: Any) -> None:
    """Print ``obj`` as one line of JSON (NaN and inf become null)."""
    print(json.dumps(_finite(obj), default=_default, allow_nan=False))
    sys.stdout.flush()


def fmt_num(v: Any, digits: int = 4) -> str:
    """Numbers for people: 4 significant digits, ``inf``/``-`` for infinite/missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def print_table(df: pd.DataFrame, *, index: bool = True, fixed: np.ndarray | None = None) -> None:
    """Print a DataFrame with numbers formatted by :func:`fmt_num`.

    ``fixed`` (one bool per row) marks rows of parameters held fixed: every number but the first
    column's shows as ``fixed``.
    """
    shown = df.copy()
    for j, col in enumerate(shown.columns):
        if pd.api.types.is_numeric_dtype(shown[col]):
            cells = [fmt_num(v) for v in shown[col]]
            if fixed is not None and j > 0:
                cells = ["fixed" if f else c for c, f in zip(cells, fixed)]
            shown[col] = cells
    print(shown.to_string(index=index))


def print_predictions(rows: list[dict], *, header: str, latent: str, level: float) -> None:
    """The terminal table of ``atlas predict`` (fit or surrogate): one line per configuration and language.

    ``rows`` are :func:`atlas_bayes.predict.to_rows`'s; ``latent`` names the noise-free columns
    (``"law"`` for a fit, ``"latent"`` for the emulator).
    """
    pct = f"{level:.0%}"
    print(f"{header}: a new run's loss (noise included) and the {'law alone' if latent == 'law' else 'latent loss'}, "
          f"{pct} intervals")
    table = pd.DataFrame(
        [{"N": r["N"], "D": r["D"], "lang": r["lang"], "mean": r["mean"], f"{pct} lower": r["lower"],
          f"{pct} upper": r["upper"], latent: r["law_mean"], f"{latent} {pct} lower": r["law_lower"],
          f"{latent} {pct} upper": r["law_upper"],
          "mix": ",".join(f"{k}={fmt_num(v, 3)}" for k, v in r["mix"].items())} for r in rows]
    )
    print_table(table, index=False)


def parse_assignments(text: str | None, *, flag: str) -> dict[str, float]:
    """Parse ``"en=0.5,fr=0.5"`` into ``{"en": 0.5, "fr": 0.5}``; errors name the flag."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects NAME=VALUE pairs separated by commas; got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{flag}: value for {key.strip()!r} must be a number; got {value!r}") from None
    return out


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one line of JSON instead of a table")


def add_level_flag(parser) -> None:
    parser.add_argument("--level", type=float, default=0.9, help="credible/confidence level of intervals (default 0.9)")
