"""Headless plots: each writes a PNG (atomically) from a small hand-made result, no sampling."""

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import plots
from atlas_bayes.crossover import CrossoverResult

PNG = b"\x89PNG\r\n\x1a\n"


def _scores(n=3):
    langs = ["en", "fr", "ru"][:n]
    mean = np.array([[np.nan, 0.4, -0.2], [0.1, np.nan, 0.3], [-0.05, 0.2, np.nan]])[:n, :n, None]
    ds = xr.Dataset({"mean": (("target", "source", "horizon"), mean), "lower": (("target", "source", "horizon"), mean - 0.1),
                     "upper": (("target", "source", "horizon"), mean + 0.1),
                     "measured": (("target", "source"), np.isfinite(mean[..., 0]))},
                    coords={"target": langs, "source": langs, "horizon": [1e9]})
    return ds


def test_transfer_heatmaps(tmp_path):
    path = plots.transfer_heatmap(_scores(), tmp_path / "h.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    model = xr.Dataset({"filled_mean": (("target", "source"), np.array([[np.nan, 0.2], [-0.3, np.nan]])),
                        "filled_lower": (("target", "source"), np.array([[np.nan, -0.1], [-0.5, np.nan]])),
                        "filled_upper": (("target", "source"), np.array([[np.nan, 0.5], [-0.1, np.nan]])),
                        "measured": (("target", "source"), np.array([[False, True], [False, False]]))},
                       coords={"target": ["en", "fr"], "source": ["en", "fr"]}, attrs={"level": 0.9})
    assert plots.transfer_heatmap(model, tmp_path / "m.png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "m.png"]  # no temporary files left


def test_iso_loss_and_crossover_plots(tmp_path):
    s = np.geomspace(0.5, 8, 10)
    table = pd.DataFrame({"N_mult": s, "D_t_mult": 1 / s, "D_t_lower": 0.8 / s, "D_t_upper": 1.2 / s})
    table.attrs.update(r=2.0, level=0.9, min_compute={k: {"median": 1.2, "lower": 1.0, "upper": 1.5} for k in ("N", "D_t")})
    assert plots.iso_loss_plot(table, tmp_path / "iso.png").read_bytes()[:8] == PNG
    D = np.geomspace(1e9, 1e10, 20)
    curves = [{"N": 1e7, "D": D, "pretrain": (4 - np.log10(D) / 10,) * 3, "finetune": (3.5 - np.log10(D) / 20,) * 3}]
    tab = pd.DataFrame([{"D_star_median": 3e9, "D_star_lower": 2e9, "D_star_upper": 5e9}])
    res = CrossoverResult(target="de", units="bits/byte", include_base_compute=False, budget=None, level=0.9, table=tab,
                          power_law=None, curves=curves, diagnostics={}, draws={})
    assert plots.crossover_plot(res, tmp_path / "x.png").read_bytes()[:8] == PNG
