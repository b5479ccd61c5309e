"""Headless plots (matplotlib, Agg) written as PNG files.

Each function takes an analysis result and a path, draws one figure and writes it atomically
(temporary file, then rename); it returns the path. Nothing here opens a window, so the functions
run in CI and over SSH.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["transfer_heatmap", "iso_loss_plot", "crossover_plot", "loss_curves_plot", "surrogate_holdout_plot", "save_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically and close it."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def transfer_heatmap(ds: xr.Dataset, path: str | os.PathLike, *, horizon: float | None = None, title: str | None = None) -> Path:
    """Heatmap of a transfer matrix (rows = target, columns = source).

    ``ds`` is a result of :func:`atlas_bayes.transfer.transfer_scores` (posterior means at one
    horizon) or of :mod:`atlas_bayes.transfer_model` (measured cells as measured, the rest
    predicted, marked with a dot). Cells whose credible interval contains 0 are hatched; cells with
    no score are grey.
    """
    plt = _pyplot()
    if "filled_mean" in ds:
        mean, lo, hi = (ds[f"filled_{k}"].values for k in ("mean", "lower", "upper"))
        predicted = ~ds["measured"].values & np.isfinite(mean)
        label = f"BTS (measured; dots: predicted, {ds.attrs.get('level', 0.9):.0%} intervals)"
    else:
        from atlas_bayes.transfer import _horizon_index

        sel = ds.isel(horizon=_horizon_index(ds, horizon))
        mean, lo, hi = (sel[k].values for k in ("mean", "lower", "upper"))
        predicted = np.zeros_like(mean, dtype=bool)
        label = f"BTS posterior mean at d_mono = {float(sel['horizon']):.3g} tokens"
    targets, sources = [str(x) for x in ds["target"].values], [str(x) for x in ds["source"].values]
    n_t, n_s = len(targets), len(sources)
    finite = np.isfinite(mean)
    lim = max(float(np.nanmax(np.abs(mean))) if finite.any() else 1.0, 1e-3)
    size = max(4.0, 0.32 * max(n_t, n_s) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, vmin=-lim, vmax=lim, aspect="equal")
    uncertain = finite & (lo < 0) & (hi > 0)
    for i, j in zip(*np.nonzero(uncertain)):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.35", linewidth=0))
    if predicted.any():
        pi, pj = np.nonzero(predicted)
        ax.scatter(pj + 0.32, pi - 0.32, s=7, c="k", marker="o", linewidths=0)  # corner dot: clear of the text
    if max(n_t, n_s) <= 12:
        for i, j in zip(*np.nonzero(finite)):
            ax.text(j, i, f"{mean[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(mean[i, j]) > 0.6 * lim else "black")
    ax.set_xticks(range(n_s), sources, rotation=90 if n_s > 12 else 0)
    ax.set_yticks(range(n_t), targets)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(title or "bilingual transfer score BTS(source -> target); hatched: interval contains 0", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    return save_figure(fig, path)


def iso_loss_plot(table, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """The curse's iso-loss curve: ``D_t`` multiplier against ``N`` multiplier with its band.

    ``table`` is the frame of :func:`atlas_bayes.curse.iso_loss_curve` (columns ``N_mult``,
    ``D_t_mult`` (median), ``D_t_lower``, ``D_t_upper``), with the minimum-compute point in its
    attrs (``min_compute``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ok = np.isfinite(table["D_t_mult"].to_numpy())
    x = table["N_mult"].to_numpy()
    ax.fill_between(x, table["D_t_lower"].to_numpy(), table["D_t_upper"].to_numpy(), color="C0", alpha=0.25, linewidth=0,
                    label=f"{table.attrs.get('level', 0.9):.0%} interval")
    ax.plot(x[ok], table["D_t_mult"].to_numpy()[ok], color="C0", label="iso-loss (posterior median)")
    best = table.attrs.get("min_compute")
    if best:
        ax.errorbar([best["N"]["median"]], [best["D_t"]["median"]],
                    xerr=[[best["N"]["median"] - best["N"]["lower"]], [best["N"]["upper"] - best["N"]["median"]]],
                    yerr=[[best["D_t"]["median"] - best["D_t"]["lower"]], [best["D_t"]["upper"] - best["D_t"]["median"]]],
                    fmt="o", color="C3", capsize=3, label="minimum compute")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N' / N (model size multiplier)")
    ax.set_ylabel("D_t' / D_t (tokens per language multiplier)")
    r = table.attrs.get("r")
    ax.set_title(title or (f"same loss with {r:g}x the languages" if r else "iso-loss curve"), fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def crossover_plot(result, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Pretraining vs finetuning learning curves of each size with the crossover ``D*`` interval.

    ``result`` is a :class:`atlas_bayes.crossover.CrossoverResult`.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for k, row in enumerate(result.curves):
        color = f"C{k % 10}"
        D = row["D"]
        for kind, style in (("pretrain", "-"), ("finetune", "--")):
            med, lo, hi = row[kind]
            ax.plot(D, med, style, color=color, label=f"N={row['N']:.3g} {kind}")
            ax.fill_between(D, lo, hi, color=color, alpha=0.15, linewidth=0)
        s = result.table.iloc[k]
        if np.isfinite(s["D_star_lower"]) and np.isfinite(s["D_star_upper"]):
            ax.axvspan(s["D_star_lower"], s["D_star_upper"], color=color, alpha=0.08)
        if np.isfinite(s["D_star_median"]):
            ax.axvline(s["D_star_median"], color=color, linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels of a short log axis overlap
    ax.set_xlabel("tokens of the target")
    ax.set_ylabel(f"loss on {result.target} ({result.units})")
    ax.set_title(title or f"pretrain from scratch (solid) vs finetune (dashed) on {result.target}: crossover D*", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def loss_curves_plot(fit, cube: xr.Dataset, path: str | os.PathLike, *, target: str | None = None, level: float = 0.9,
                     title: str | None = None) -> Path:
    """Observed losses against ``D`` (one line per ``N``) and against ``N`` (one per ``D``), with bands.

    ``fit`` is a fit of a law of ``N`` and ``D`` (:func:`atlas_bayes.inference.fit_bayes` or a point
    fit with bootstrap); ``cube`` the runs to show (final checkpoints). The dark band is the law's
    ``level`` credible interval (parameter uncertainty), the light band a new run's predictive interval
    (noise included).
    """
    from atlas_bayes import cube as cube_lib
    from atlas_bayes.predict import predict

    plt = _pyplot()
    target = target or fit.targets[0]
    fin = cube_lib.final(cube)
    N = fin["N"].values.astype(float)
    D = np.asarray(fin["D"].values, dtype=float).reshape(len(N), -1)[:, -1]
    y = fin["loss"].sel(lang=target).values.reshape(len(N), -1)[:, -1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    for ax, (x, other, xname, oname) in zip(axes, ((D, N, "D (tokens)", "N"), (N, D, "N (parameters)", "D"))):
        values = np.unique(other)
        grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 40)
        for k, v in enumerate(values):
            color = plt.get_cmap("viridis")(k / max(len(values) - 1, 1))
            q = dict(N=float(v), D=grid) if xname.startswith("D") else dict(N=grid, D=float(v))  # N x D is a product grid
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the bands run a little past the data on purpose
                ds = predict(fit, **q, target=target, level=level).sel(lang=target)
            ax.fill_between(grid, ds["lower"].values, ds["upper"].values, color=color, alpha=0.12, linewidth=0)
            ax.fill_between(grid, ds["law_lower"].values, ds["law_upper"].values, color=color, alpha=0.35, linewidth=0)
            ax.plot(grid, ds["median"].values, color=color, linewidth=1, label=f"{oname}={v:.3g}")
            sel = other == v
            ax.scatter(x[sel], y[sel], color=color, s=16, edgecolor="k", linewidth=0.4, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xname)
        ax.legend(fontsize=7, title=f"{len(values)} values of {oname}", title_fontsize=7)
    axes[0].set_ylabel(f"loss on {target} ({cube['loss'].attrs.get('units', '')})")
    fig.suptitle(title or f"{fit.law} fit ({fit.method}): law's {level:.0%} interval (dark), new run's (light)", fontsize=10)
    return save_figure(fig, path)


def surrogate_holdout_plot(observed, mean, lower, upper, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Predicted against observed loss of held-out runs, with each prediction's interval as an error bar.

    Arrays of one shape (runs x languages, NaN where not observed); points on the diagonal are exact.
    """
    plt = _pyplot()
    obs, mean, lo, hi = (np.asarray(a, dtype=float).ravel() for a in (observed, mean, lower, upper))
    ok = np.isfinite(obs) & np.isfinite(mean)
    inside = ok & (obs >= lo) & (obs <= hi)
    fig, ax = plt.subplots(figsize=(5, 5))
    for sel, color, label in ((inside, "C0", "inside the interval"), (ok & ~inside, "C3", "outside")):
        if sel.any():
            ax.errorbar(obs[sel], mean[sel], yerr=[mean[sel] - lo[sel], hi[sel] - mean[sel]], fmt="o", ms=3, color=color,
                        elinewidth=0.8, capsize=0, label=f"{label} ({int(sel.sum())})")
    span = [np.nanmin(np.r_[obs[ok], lo[ok]]), np.nanmax(np.r_[obs[ok], hi[ok]])]
    ax.plot(span, span, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_xlabel("observed loss")
    ax.set_ylabel("predicted loss (mean, interval)")
    ax.set_title(title or "surrogate on held-out runs", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
