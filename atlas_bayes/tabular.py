"""Run tables in long form <-> run cubes.

One row per run x evaluation language [x checkpoint]. Columns:

=================  ===========================================================================
``N``              parameters (required)
``D``              tokens seen in total at this row's checkpoint (required)
``loss``           evaluation loss (required)
``lang``           evaluation language (default: one language named ``xx``)
``run``            run id (default: one run per distinct configuration)
``step``           checkpoint index along the run's learning curve
``seed``           integer seed
``U``              unique tokens available in the *evaluated* language
``kind``           ``pretrain`` or ``finetune``
``base``           checkpoint a finetune started from
``src``            the one training language (or data domain) of the run, when it is evaluated on
                   others too; shorthand for ``mix:<src> = 1`` (not with ``mix:`` columns)
``mix:<lang>``     sampling weight of training language ``<lang>`` (blank = 0)
``U:<lang>``       unique tokens available in training language ``<lang>`` (blank = inf)
=================  ===========================================================================

Without ``mix:`` columns every run is monolingual in the language it is evaluated on.
Validation reports every problem at once and names the rows (file lines for a file) at fault.

Tables from other groups rarely use these names: ``columns={"N": "params", "D": "tokens"}`` (CLI
``--columns N=params,D=tokens``) renames theirs to ours, and ``ignore`` drops columns atlas does not
use (``ignore="unknown"`` drops every unknown column; the dropped names are kept in the cube's attrs).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes.cube import CubeError, _fmt_list

__all__ = ["from_table", "to_table", "read_table", "import_table", "rename_columns", "KNOWN_COLUMNS"]

KNOWN_COLUMNS = ("N", "D", "loss", "lang", "run", "step", "seed", "U", "kind", "base", "src")
_NUMERIC = ("N", "D", "loss", "U", "step", "seed")
_RUN_LEVEL = ("N", "seed", "kind", "base")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.tsv``) or parquet run table; rows are labelled by file line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            df.index = pd.RangeIndex(len(df))
            df.attrs["row_label"] = "row"
        elif suffix in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"lang": str, "run": str, "kind": str, "base": str})
            df.index = pd.RangeIndex(2, len(df) + 2)  # line numbers in the file, header = line 1
            df.attrs["row_label"] = "line"
        else:
            raise CubeError([f"unsupported table format {suffix!r} for {str(path)!r}; expected .csv, .tsv or .parquet"], what="run table")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise CubeError([f"{str(path)!r} could not be parsed as a {suffix[1:]} table: {err}"], what="run table") from None
    except Exception as err:  # pyarrow raises its own error types for a malformed parquet file
        if type(err).__module__.startswith("pyarrow"):
            raise CubeError([f"{str(path)!r} is not a readable parquet file: {err}"], what="run table") from None
        raise
    df.attrs["source"] = str(path)
    return df


def _rows(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    label = df.attrs.get("row_label", "row")
    idx = list(df.index[np.asarray(mask, dtype=bool)])
    return f"{label}{'s' * (len(idx) > 1)} {_fmt_list(idx)}"


def _check(df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """All problems of a long-form table, and a mask of the rows at fault (for ``drop_invalid``)."""
    problems: list[str] = []
    bad_rows = np.zeros(len(df), dtype=bool)
    if len(df) == 0:
        return ["the table is empty: it has a header but no rows"], bad_rows
    missing = [c for c in ("N", "D", "loss") if c not in df.columns]
    if missing:
        problems.append(
            f"missing required column(s) {missing}; a run table needs N, D and loss (got {list(df.columns)}); "
            "map yours with --columns, e.g. --columns N=params,D=tokens"
        )
    unknown = [c for c in df.columns if c not in KNOWN_COLUMNS and not str(c).startswith(("mix:", "U:"))]
    if unknown:
        problems.append(
            f"unknown column(s) {unknown}; expected {list(KNOWN_COLUMNS)} or mix:<lang> / U:<lang> per training language "
            "(rename with --columns OURS=THEIRS, drop with --ignore NAME,... or --ignore unknown)"
        )
    if problems:
        return problems, bad_rows
    numeric_cols = [c for c in df.columns if c in _NUMERIC or str(c).startswith(("mix:", "U:"))]
    for col in numeric_cols:
        values = pd.to_numeric(df[col], errors="coerce")
        not_number = values.isna() & df[col].notna()
        if not_number.any():
            examples = _fmt_list([repr(v) for v in df[col][not_number].tolist()], 3)
            problems.append(f"column {col!r} must be numeric; got {examples} at {_rows(df, not_number)}")
            bad_rows |= not_number.to_numpy()
    num = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in numeric_cols}

    if "seed" in num:
        v = num["seed"]
        mask = np.isnan(v) | (np.isfinite(v) & (v != np.round(v))) | np.isinf(v)
        if mask.any():
            problems.append(
                f"seed must be a whole number; blank or fractional at {_rows(df, mask)} "
                "(fill the seeds in, or leave the column out with --ignore seed)"
            )
            bad_rows |= mask
    loss = num["loss"]
    for mask, what in (
        (np.isnan(loss) & df["loss"].isna().to_numpy(), "loss is missing (NaN)"),
        (np.isinf(loss), "loss is infinite"),
        (np.isfinite(loss) & (loss <= 0), "loss must be positive"),
    ):
        if mask.any():
            problems.append(f"{what} at {_rows(df, mask)}")
            bad_rows |= mask
    for col in ("N", "D"):
        v = num[col]
        mask = df[col].isna().to_numpy() | (np.isfinite(v) & (v <= 0)) | np.isinf(v)
        if mask.any():
            problems.append(f"{col} must be a positive finite number; bad at {_rows(df, mask)}")
            bad_rows |= mask
    for col in [c for c in numeric_cols if c == "U" or str(c).startswith("U:")]:
        v = num[col]
        mask = v <= 0
        if mask.any():
            problems.append(f"{col} must be positive (or blank/inf for unconstrained); bad at {_rows(df, mask)}")
            bad_rows |= mask
    mix_cols = [c for c in df.columns if str(c).startswith("mix:")]
    if mix_cols:
        weights = np.stack([num[c] for c in mix_cols], axis=1)
        weights = np.where(np.isnan(weights), 0.0, weights)
        neg = (weights < 0).any(axis=1)
        if neg.any():
            problems.append(f"mix weights must be >= 0; negative at {_rows(df, neg)}")
            bad_rows |= neg
        sums = weights.sum(axis=1)
        off = np.abs(sums - 1.0) > cube_lib.MIX_TOL
        if off.any():
            shown = _fmt_list([f"{s:.6g}" for s in sums[off]], 3)
            problems.append(f"mix:<lang> weights must sum to 1 (tolerance {cube_lib.MIX_TOL:g}); sums {shown} at {_rows(df, off)}")
            bad_rows |= off
    if "kind" in df.columns:
        mask = ~df["kind"].isin(cube_lib.KINDS).to_numpy()
        if mask.any():
            got = sorted({str(k) for k in df["kind"][mask]})
            problems.append(f"kind must be one of {list(cube_lib.KINDS)}; got {_fmt_list(got)} at {_rows(df, mask)}")
            bad_rows |= mask
    return problems, bad_rows


def _run_keys(df: pd.DataFrame) -> pd.Series:
    """Run id of each row: the ``run`` column, or one id per distinct run configuration."""
    if "run" in df.columns:
        return df["run"].astype(str)
    mix_cols = [c for c in df.columns if str(c).startswith(("mix:", "U:"))]
    key_cols = [c for c in ("N", "seed", "kind", "base") if c in df.columns] + mix_cols
    if "step" not in df.columns:
        key_cols.append("D")
    if not any(str(c).startswith("mix:") for c in df.columns):
        key_cols.append("lang")  # monolingual: a run trains on the language it is evaluated on
        if "U" in df.columns:
            key_cols.append("U")
    key = df[key_cols].astype(str).agg("|".join, axis=1)
    codes = pd.factorize(key)[0]
    return pd.Series([f"r{c:04d}" for c in codes], index=df.index)


def rename_columns(
    df: pd.DataFrame,
    columns: dict[str, str] | None = None,
    ignore: Sequence[str] | str | None = None,
) -> pd.DataFrame:
    """Map a foreign table's columns to atlas's: ``columns`` is ``{ours: theirs}``; ``ignore`` drops.

    A label column (``run``, ``lang``, ``src``, ``base``) may join several of theirs with ``+``:
    ``{"run": "model+lr"}`` makes one run per (model, learning rate); the joined columns are
    used up.

    The name ``"unknown"`` in ``ignore`` stands for every column that is neither known nor
    ``mix:``/``U:`` after the renaming. The names dropped are listed in ``df.attrs["ignored_columns"]``.
    """
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    columns = dict(columns or {})
    problems = []
    joined = {}
    for ours, theirs in columns.items():
        parts = theirs.split("+")
        if ours not in KNOWN_COLUMNS and not ours.startswith(("mix:", "U:")):
            problems.append(f"cannot map {theirs!r} to {ours!r}: {ours!r} is not an atlas column; expected one of {list(KNOWN_COLUMNS)} or mix:<lang> / U:<lang>")
        elif len(parts) > 1 and ours not in ("run", "lang", "src", "base"):
            problems.append(f"cannot join {theirs!r} into {ours!r}: only the label columns run, lang, src and base can join several columns with '+'")
        elif any(p not in df.columns for p in parts):
            absent = [p for p in parts if p not in df.columns]
            problems.append(f"cannot map {theirs!r} to {ours!r}: the table has no column {absent[0]!r} (columns: {_fmt_list(list(df.columns), 12)})")
        elif len(parts) > 1:
            joined[ours] = parts
    clash = [ours for ours, theirs in columns.items() if ours in df.columns and ours != theirs and ours not in columns.values()]
    if clash:
        problems.append(f"the table already has column(s) {clash}; map them away first or ignore them")
    if problems:
        raise CubeError(problems, what="column mapping")
    for ours, parts in joined.items():
        df[columns[ours]] = df[parts].astype(str).agg("|".join, axis=1)
    df = df.rename(columns={theirs: ours for ours, theirs in columns.items()})
    # columns consumed by a join are used up, unless also mapped on their own
    consumed = {p for parts in joined.values() for p in parts} - set(columns.values()) - set(KNOWN_COLUMNS)
    df = df.drop(columns=[c for c in consumed if c in df.columns])
    names = [] if ignore is None else [ignore] if isinstance(ignore, str) else list(ignore)
    missing = [c for c in names if c != "unknown" and c not in df.columns]
    if missing:
        raise CubeError(
            [f"cannot ignore column(s) {missing}: not in the table (columns: {_fmt_list(list(df.columns), 12)})"],
            what="column mapping",
        )
    drop = [c for c in names if c != "unknown"]
    if "unknown" in names:
        drop += [c for c in df.columns if c not in KNOWN_COLUMNS and not c.startswith(("mix:", "U:")) and c not in drop]
    attrs = dict(df.attrs)
    df = df.drop(columns=drop)
    df.attrs = attrs
    if drop:
        df.attrs["ignored_columns"] = list(drop)
    if columns:
        df.attrs["column_mapping"] = columns
    return df


def from_table(
    df: pd.DataFrame,
    *,
    units: str = "nats/token",
    drop_invalid: bool = False,
    attrs: dict | None = None,
    columns: dict[str, str] | None = None,
    ignore: Sequence[str] | str | None = None,
) -> xr.Dataset:
    """Build a run cube from a long-form table (see the module docstring for the columns).

    Parameters
    ----------
    df
        The table; ``df.attrs["row_label"] = "line"`` makes messages cite file lines.
    units
        Unit of ``loss`` (stored in ``loss.attrs["units"]``).
    drop_invalid
        Drop the rows at fault instead of refusing the table; each dropped row is reported in a
        warning and in ``cube.attrs["dropped_rows"]``.
    columns, ignore
        Rename and drop a foreign table's columns first (:func:`rename_columns`).

    Raises
    ------
    CubeError
        Listing every problem of the table, each with the rows at fault.
    """
    df = rename_columns(df, columns, ignore)
    problems, bad_rows = _check(df)
    if "lang" not in df.columns:
        df["lang"] = "xx"
    df["lang"] = df["lang"].astype(str)
    if "src" in df.columns:
        if any(c.startswith("mix:") for c in df.columns):
            raise CubeError(["give either a src column or mix:<lang> columns, not both"], what="run table")
        if df["src"].isna().any():
            raise CubeError([f"src is blank at {_rows(df, df['src'].isna())}; name the run's training language"], what="run table")
        attrs = dict(df.attrs)
        src = df.pop("src").astype(str)
        for value in pd.unique(src):
            df[f"mix:{value}"] = (src == value).astype(float)
        df.attrs = attrs
    dropped: list = []
    if problems and drop_invalid and bad_rows.any() and not bad_rows.all():
        dropped = [int(i) for i in df.index[bad_rows]]
        label = df.attrs.get("row_label", "row")
        warnings.warn(
            f"dropped {len(dropped)} invalid {label}(s) {_fmt_list(dropped)}:\n" + "\n".join(f"  - {p}" for p in problems),
            UserWarning,
            stacklevel=2,
        )
        df = df[~bad_rows]
        problems, _ = _check(df)
    if problems:
        raise CubeError(problems, what="run table")

    mix_cols = [c for c in df.columns if c.startswith("mix:")]
    u_cols = [c for c in df.columns if c.startswith("U:")]
    for c in [c for c in df.columns if c in _NUMERIC] + mix_cols + u_cols:
        df[c] = pd.to_numeric(df[c])
    run_given = "run" in df.columns
    df["run"] = _run_keys(df)
    has_step = "step" in df.columns

    problems = []
    cell = ["run", "lang"] + (["step"] if has_step else [])
    dup = df.duplicated(cell, keep=False).to_numpy()
    if dup.any() and drop_invalid:
        # Exact repeats (same loss and D) keep their first copy; conflicting rows are all dropped.
        repeat = df.duplicated(cell + ["loss", "D"], keep="first").to_numpy()
        conflict = df[~repeat].duplicated(cell, keep=False).reindex(df.index, fill_value=False).to_numpy()
        gone = repeat | conflict
        label = df.attrs.get("row_label", "row")
        warnings.warn(
            f"dropped {int(gone.sum())} duplicate {label}(s) for the same run x lang{' x step' if has_step else ''}: "
            f"{int(repeat.sum())} exact repeats ({_rows(df, repeat) if repeat.any() else 'none'}) and "
            f"{int(conflict.sum())} rows with conflicting losses ({_rows(df, conflict) if conflict.any() else 'none'})",
            UserWarning,
            stacklevel=2,
        )
        dropped += [int(i) for i in df.index[gone]]
        df = df[~gone]
        dup = np.zeros(len(df), dtype=bool)
    if dup.any():
        hint = "" if run_given else " (add a seed or run column if they are repeats)"
        problems.append(
            f"duplicate rows for the same run x lang{' x step' if has_step else ''} at {_rows(df, dup)}{hint}; "
            "--drop-invalid keeps the first of exact repeats and drops conflicting ones"
        )
    run_level = [c for c in _RUN_LEVEL if c in df.columns] + mix_cols + u_cols + ([] if has_step else ["D"])
    for col in run_level:
        n_distinct = df.groupby("run", sort=False)[col].nunique(dropna=False)
        conflict = n_distinct[n_distinct > 1].index.tolist()
        if conflict:
            problems.append(f"column {col!r} differs between rows of the same run for run(s) {_fmt_list(conflict)}")
    if has_step:
        n_distinct = df.groupby(["run", "step"], sort=False)["D"].nunique()
        conflict = [f"{r}@{s}" for r, s in n_distinct[n_distinct > 1].index]
        if conflict:
            problems.append(f"D differs between languages of the same run and step at {_fmt_list(conflict)}")
    if not mix_cols:
        langs_per_run = df.groupby("run", sort=False)["lang"].nunique()
        multi = langs_per_run[langs_per_run > 1].index.tolist()
        if multi:
            problems.append(
                f"run(s) {_fmt_list(multi)} are evaluated on several languages but the table has no mix:<lang> "
                "columns; add mix:<lang> columns giving each run's training mixture"
            )
    if problems:
        raise CubeError(problems, what="run table")

    runs = list(pd.unique(df["run"]))
    langs = list(pd.unique(df["lang"]))
    srcs = [c[4:] for c in mix_cols] if mix_cols else langs
    srcs += [c[2:] for c in u_cols if c[2:] not in srcs]
    first = df.drop_duplicates("run").set_index("run").loc[runs]
    r_idx = pd.Index(runs).get_indexer(df["run"])
    l_idx = pd.Index(langs).get_indexer(df["lang"])

    if mix_cols:
        mix = np.zeros((len(runs), len(srcs)))
        for c in mix_cols:
            w = first[c].to_numpy(dtype=float)
            mix[:, srcs.index(c[4:])] = np.where(np.isnan(w), 0.0, w)  # blank = not sampled
    else:
        mix = np.zeros((len(runs), len(srcs)))
        mix[r_idx, pd.Index(srcs).get_indexer(df["lang"])] = 1.0
    U = np.full((len(runs), len(srcs)), np.inf)
    for c in u_cols:
        u = first[c].to_numpy(dtype=float)
        U[:, srcs.index(c[2:])] = np.where(np.isnan(u), np.inf, u)  # blank = unconstrained
    if "U" in df.columns:
        s_idx = pd.Index(srcs).get_indexer(df["lang"])
        ok = (s_idx >= 0) & df["U"].notna().to_numpy()
        U[r_idx[ok], s_idx[ok]] = df["U"].to_numpy(dtype=float)[ok]

    if has_step:
        steps = np.sort(pd.unique(df["step"].astype(np.int64)))
        k_idx = pd.Index(steps).get_indexer(df["step"].astype(np.int64))
        loss = np.full((len(runs), len(langs), len(steps)), np.nan)
        loss[r_idx, l_idx, k_idx] = df["loss"].to_numpy(dtype=float)
        D = np.full((len(runs), len(steps)), np.nan)
        D[r_idx, k_idx] = df["D"].to_numpy(dtype=float)
    else:
        steps = None
        loss = np.full((len(runs), len(langs)), np.nan)
        loss[r_idx, l_idx] = df["loss"].to_numpy(dtype=float)
        D = first["D"].to_numpy(dtype=float)

    cube_attrs = dict(attrs or {})
    for key in ("source", "column_mapping", "ignored_columns"):
        if key in df.attrs:
            cube_attrs.setdefault(key, df.attrs[key])
    if dropped:
        cube_attrs["dropped_rows"] = dropped
    return cube_lib.make_cube(
        loss=loss,
        N=first["N"].to_numpy(dtype=float),
        D=D,
        mix=mix,
        U=U,
        run=runs,
        lang=langs,
        src=srcs,
        step=steps,
        seed=first["seed"].to_numpy(dtype=np.int64) if "seed" in first else None,
        kind=first["kind"].tolist() if "kind" in first else None,
        base=first["base"].fillna("").tolist() if "base" in first else None,
        units=units,
        attrs=cube_attrs,
    )


def to_table(cube: xr.Dataset) -> pd.DataFrame:
    """The long-form table of a cube: one row per finite loss cell; inverse of :func:`from_table`."""
    has_step = "step" in cube["loss"].dims
    loss = cube["loss"].to_dataframe().reset_index().dropna(subset=["loss"])
    loss["run"] = loss["run"].astype(str)
    loss["lang"] = loss["lang"].astype(str)
    if has_step:
        d = cube["D"].to_dataframe().reset_index()
        d["run"] = d["run"].astype(str)
        loss = loss.merge(d, on=["run", "step"])
    else:
        loss["D"] = cube["D"].to_series().reindex(loss["run"]).to_numpy()
    runs = pd.DataFrame({"run": [str(r) for r in cube["run"].values], "N": cube["N"].values})
    for name in ("seed", "kind", "base"):
        if name in cube:
            runs[name] = cube[name].values
    srcs = [str(s) for s in cube["src"].values]
    for j, s in enumerate(srcs):
        runs[f"mix:{s}"] = cube["mix"].values[:, j]
    if np.isfinite(cube["U"].values).any():
        for j, s in enumerate(srcs):
            runs[f"U:{s}"] = cube["U"].values[:, j]
    table = loss.merge(runs, on="run")
    front = ["run", "lang"] + (["step"] if has_step else []) + ["N", "D", "loss"]
    return table[front + [c for c in table.columns if c not in front]].reset_index(drop=True)


def import_table(
    path: str | os.PathLike,
    *,
    units: str = "nats/token",
    drop_invalid: bool = False,
    out: str | os.PathLike | None = None,
    columns: dict[str, str] | None = None,
    ignore: Sequence[str] | str | None = None,
) -> xr.Dataset:
    """Read a run table file, build its cube and (if ``out`` is given) save it as netCDF.

    A refused table writes nothing. ``columns`` and ``ignore`` as in :func:`from_table`.
    """
    cube = from_table(read_table(path), units=units, drop_invalid=drop_invalid, columns=columns, ignore=ignore)
    if out is not None:
        cube_lib.save(cube, out)
    return cube
