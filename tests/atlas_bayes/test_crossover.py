"""Pretrain vs finetune: recovery of a known crossover and of C*(N), the base-compute variant,
the exact power-law posterior, errors naming the runs to add, and ``atlas crossover``."""

import json
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq

from atlas_bayes import crossover
from atlas_bayes import cube as cube_lib
from atlas_bayes.cli import main
from atlas_bayes.results import DiagnosticsWarning

SIZES = (1e7, 3e7, 1e8)
E, A, B, ALPHA, BETA = 1.8, 400.0, 2000.0, 0.34, 0.36
PENALTY, D0_PER_N = 0.04, 100.0  # finetunes: a worse asymptote, and a head start worth D0 = 100 N tokens
FAST = dict(draws=300, warmup=300, chains=2)  # same sampler shapes as test_transfer's: one compilation


def _true_crossover(N):
    return brentq(lambda D: B * (D**-BETA - (D + D0_PER_N * N) ** -BETA) - PENALTY, 1e3, 1e15)


def _cube(*, sizes=SIZES, seeds=3, kind=True, d_base=True, key=0):
    rng = np.random.default_rng(key)
    rows = []
    for N in sizes:
        D = np.geomspace(100 * N, 3000 * N, 12)
        for s in range(seeds):
            pt = E + A * N**-ALPHA + B * D**-BETA
            ft = E + A * N**-ALPHA + PENALTY + B * (D + D0_PER_N * N) ** -BETA
            for k, curve in (("pretrain", pt), ("finetune", ft)):
                rows.append((k, N, D, curve * np.exp(0.003 * rng.standard_normal(12)), s))
    extra = {"D_base": (("run",), np.array([0.0 if r[0] == "pretrain" else 1000.0 * r[1] for r in rows]))} if d_base else None
    return cube_lib.make_cube(loss=np.stack([r[3] for r in rows])[:, None, :], N=np.array([r[1] for r in rows]),
                              D=np.stack([r[2] for r in rows]), lang=["de"], seed=np.array([r[4] for r in rows]),
                              kind=[r[0] for r in rows] if kind else None, extra=extra)


@pytest.fixture(scope="module")
def cube():
    return _cube()


@pytest.fixture(scope="module")
def result(cube):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # small test sampler; warnings are tested in test_transfer
        return crossover.crossover(cube, target="de", budget=3e9, include_base_compute=True, level=0.95, **FAST)


def test_recovers_the_crossover_and_its_power_law(result):
    t = result.table
    covered = [lo <= _true_crossover(n) <= hi for n, lo, hi in zip(t["N"], t["D_star_lower"], t["D_star_upper"])]
    assert sum(covered) >= 2, (covered, t[["N", "D_star_lower", "D_star_upper"]])  # 95% intervals, 3 sizes
    assert np.all(t["p_cross"] == 1.0) and np.all(t["extrapolated"] < 0.05) and list(t["pairings"]) == [9, 9, 9]
    true_gamma = 1 + np.polyfit(np.log(SIZES), np.log([_true_crossover(n) for n in SIZES]), 1)[0]
    g = result.power_law["sunk"]["gamma"]
    assert g["lower"] < true_gamma < g["upper"]
    # 3e9 tokens is below every D* (5e9..2.6e10): finetuning is better there at every size
    assert np.all(t["p_finetune_better"] > 0.95)
    # counting the base's 1000 N tokens, scratch is better from the first point: finetuning never pays
    assert np.all(t["total_below_range"] == 1.0) and np.all(t["total_p_finetune_better"] < 0.05)
    assert result.power_law["total"] is None
    assert np.allclose(t["C_star_median"], 6 * t["N"] * t["D_star_median"], rtol=0.02)


def test_fit_power_law_is_exact_on_known_lines():
    rng = np.random.default_rng(0)
    N = np.array([1e7, 1e8, 1e9])
    draws = [np.exp(np.log(2e5) + 1.6 * np.log(n) + 0.01 * rng.standard_normal(4000)) for n in N]
    out = crossover.fit_power_law(N, draws)
    assert out["gamma"]["lower"] < 1.6 < out["gamma"]["upper"] and out["gamma"]["upper"] - out["gamma"]["lower"] < 0.1
    assert out["k"]["lower"] < 2e5 < out["k"]["upper"] and out["note"] is None
    two = crossover.fit_power_law(N[:2], draws[:2])
    assert two["tau"]["upper"] == 0.0 and "two sizes" in two["note"]
    with pytest.raises(ValueError, match=r"needs crossovers at 2 or more model sizes; add finetune and pretraining runs"):
        crossover.fit_power_law(N[:1], draws[:1])


def test_errors_name_the_runs_to_add(cube):
    with pytest.raises(ValueError, match=r"no finetune runs: the cube has no kind variable; add finetune runs of 'de'"):
        crossover.find_crossover_runs(_cube(sizes=(1e7,), seeds=1, kind=False), target="de")
    pre = np.flatnonzero(cube["kind"].values == "pretrain")
    with pytest.raises(ValueError, match=r"no finetune runs of 'de' \(kind='finetune', mix de=1\): add runs"):
        crossover.find_crossover_runs(cube.isel(run=pre), target="de")
    no_big = np.flatnonzero(~((cube["kind"].values == "pretrain") & (cube["N"].values == 1e8)))
    with pytest.raises(ValueError, match=r"no pretraining run of 'de' from scratch \(kind='pretrain', mix de=1\) at N = 1e\+08"):
        crossover.find_crossover_runs(cube.isel(run=no_big), target="de")
    with pytest.raises(ValueError, match=r"target 'fr' must be both trained on and evaluated"):
        crossover.find_crossover_runs(cube, target="fr")
    no_base = _cube(sizes=(1e7,), seeds=1, d_base=False)
    with pytest.raises(ValueError, match=r"--include-base-compute needs the base model's tokens, unknown .* --base-tokens"):
        crossover.crossover(no_base, target="de", include_base_compute=True, **FAST)
    with pytest.raises(ValueError, match=r"--budget must be a positive token count; got -1"):
        crossover.crossover(no_base, target="de", budget=-1, **FAST)


def test_crossover_cli_json(cube, tmp_path, capsys):
    path = cube_lib.save(cube, tmp_path / "cube.nc")
    png = tmp_path / "x.png"
    args = ["crossover", str(path), "--target", "de", "--budget", "3e9", "--draws", "300", "--warmup", "300",
            "--chains", "2", "--plot", str(png)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        assert main(args + ["--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert len(info["sizes"]) == 3 and info["power_law"]["gamma"]["lower"] < info["power_law"]["gamma"]["upper"]
        row = info["sizes"][0]
        assert row["D_star_lower"] <= row["D_star_median"] <= row["D_star_upper"] and 0 <= row["p_finetune_better"] <= 1
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert main(args) == 0
    text = capsys.readouterr().out
    assert "base compute sunk (the paper)" in text and "C*(N) = k N^gamma over 3 sizes" in text and "P(finetune better" in text


@pytest.mark.slow
def test_exp_crossover_sweep_end_to_end(tmp_path):
    import dataclasses

    from trainer import sweep as sweep_lib

    s = sweep_lib.load_sweep("exp_crossover")
    factor = 8

    def shrink(g):
        optim = dataclasses.replace(g.train.optim, warmup_steps=2)
        base = tuple((k, v / factor if k == "tokens" else v) for k, v in g.base) if isinstance(g.base, tuple) else g.base
        return dataclasses.replace(g, scales=("s01", "s02") if g.scales else (), tokens=tuple(t / factor for t in g.tokens)[-4:],
                                   base=base, train=dataclasses.replace(g.train, batch_size=8, optim=optim, eval_points=3))

    s = dataclasses.replace(s, data=dataclasses.replace(s.data, seq_len=32, test_tokens=512),
                            groups=tuple(shrink(g) for g in s.groups))
    res = sweep_lib.run_sweep(s, out=tmp_path / "cube.nc", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        out = crossover.crossover(res.cube, target="ama", include_base_compute=True, budget=1e4, **FAST)
    assert len(out.table) == 2 and out.diagnostics["points"] == "finals"
    assert np.allclose(out.table["D_base"], 4e4, rtol=0.01)  # the base's 3.2e5 / 8 tokens (whole steps), from D_base
    assert np.all((out.table["p_finetune_better"] >= 0) & (out.table["p_finetune_better"] <= 1))
