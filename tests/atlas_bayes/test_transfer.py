"""Bilingual transfer scores: recovery of known ATLAS transfer, the errors that name missing runs,
the hierarchical model of the matrix, tau from BTS, and ``atlas transfer``."""

import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from atlas_bayes import curves, laws, results, simulate, transfer, transfer_model
from atlas_bayes import cube as cube_lib
from atlas_bayes.cli import main
from atlas_bayes.results import DiagnosticsWarning

LANGS = ["en", "fr", "ru"]
TAU = {("en", "fr"): 0.5, ("fr", "en"): 0.2, ("en", "ru"): -0.2, ("ru", "en"): 0.0, ("fr", "ru"): 0.3, ("ru", "fr"): 0.1}
BASE = dict(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
# Small sampler settings shared by every test here: one compilation of the curve sampler serves all.
FAST = dict(draws=300, warmup=300, chains=2)


def _mixtures(langs):
    return [{x: 1.0} for x in langs] + [{s: 0.5, t: 0.5} for i, s in enumerate(langs) for t in langs[i + 1 :]]


def _cube(*, seeds=2, langs=LANGS, N=(1e7,), key=0):
    runs = simulate.grid(N=list(N), D=[4e9], mixtures=_mixtures(langs), seeds=seeds)
    return curves.simulate_curves(runs, params=BASE, tau=TAU, key=jax.random.key(key), sigma=0.004, seed_sigma=0.002)


@pytest.fixture(scope="module")
def cube():
    return _cube()


@pytest.fixture(scope="module")
def scored(cube):
    with warnings.catch_warnings(record=True) as caught:
        # 300 draws x 2 chains may fall below the ESS >= 400 bar (test speed): the warnings are checked below.
        warnings.simplefilter("always", DiagnosticsWarning)
        scores = transfer.transfer_scores(cube, level=0.95, **FAST)
    return scores, [w for w in caught if issubclass(w.category, DiagnosticsWarning)]


@pytest.fixture(scope="module")
def scores(scored):
    return scored[0]


def test_scores_recover_known_transfer(scores):
    truth = {k: float(laws.bts_from_tau(v)) for k, v in TAU.items()}
    covered = []
    for (t, s), bts in truth.items():
        cell = scores.sel(target=t, source=s).isel(horizon=0)
        covered.append(float(cell["lower"]) <= bts <= float(cell["upper"]))
        # the sign of clear transfer is never wrong
        if abs(bts) > 0.3:
            assert np.sign(float(cell["median"])) == np.sign(bts)
    # 95% intervals over 6 cells: all 6 expected; 5 tolerated (interval widths are a Monte Carlo estimate)
    assert sum(covered) >= 5, covered
    assert scores.attrs["points"] == "checkpoints" and scores.attrs["N"] == 1e7
    assert set(scores["n_pairs"].values[scores["measured"].values]) == {4}  # 2 mono seeds x 2 bilingual seeds
    assert not scores["measured"].sel(target="en", source="en")
    # the stronger transfer into en comes from fr, not ru (tau 0.5 vs -0.2)
    assert float(scores["p_positive"].sel(target="en", source="fr").item()) > 0.95
    assert float(scores["p_positive"].sel(target="en", source="ru").item()) < 0.05


def test_interval_flags_and_seed_scatter(scores):
    sel = scores.isel(horizon=0)
    m = sel["measured"].values
    assert np.all(sel["lower"].values[m] <= sel["median"].values[m])
    assert np.all(sel["median"].values[m] <= sel["upper"].values[m])
    unc = sel["uncertain"].values[m]
    assert np.array_equal(unc, (sel["lower"].values[m] < 0) & (sel["upper"].values[m] > 0))
    assert np.all(np.isfinite(sel["seed_sd"].values[m]))  # several seeds: their scatter is reported
    assert np.all(np.isnan(sel["mean"].values[~m]))


def test_curve_points_finals_stable_checkpoints():
    # No checkpoints, four budgets per configuration: each unit's curve is its runs' final losses ("finals").
    runs = simulate.grid(N=[1e7], D=[1e9, 2e9, 4e9, 8e9], mixtures=_mixtures(["en", "fr"]), seeds=2)
    c = cube_lib.final(curves.simulate_curves(runs, params=BASE, tau=TAU, key=jax.random.key(3), steps=1, first=1.0))
    found = transfer.find_transfer_runs(c)
    assert [len(u) for u in found.mono["en"]] == [4, 4]  # two seeds, four budgets each
    units = [u for v in found.mono.values() for u in v]
    assert curves.choose_points(c, units) == "finals"
    D, loss = curves.unit_curve(c, found.mono["en"][0], "en", "finals")
    assert D.tolist() == [1e9, 2e9, 4e9, 8e9] and np.all(np.diff(loss) < 0)
    # With checkpoints and a learning rate, "stable" keeps only the peak-rate checkpoints.
    one = _cube(seeds=1, langs=["en", "fr"])
    lr = np.tile(np.r_[np.linspace(0.2, 1.0, 3), np.ones(7), 0.5, 0.0], (one.sizes["run"], 1))
    one["lr"] = (("run", "step"), lr)
    unit = transfer.find_transfer_runs(one).mono["en"][0]
    assert curves.choose_points(one, [unit]) == "stable"
    D, _ = curves.unit_curve(one, unit, "en", "stable")
    assert len(D) == 8  # warmup (2) and decay (2) checkpoints left out
    assert len(curves.unit_curve(one, unit, "en", "checkpoints")[0]) == 12
    with pytest.raises(ValueError, match=r"unknown points 'x'; valid: auto, finals, stable, checkpoints"):
        curves.choose_points(one, [unit], "x")


def test_errors_name_the_runs_to_add(cube):
    mono_only = cube.isel(run=[0, 1, 2])
    with pytest.raises(ValueError, match=r"no bilingual 50/50 pretraining runs .* add runs with mix s=0.5,t=0.5"):
        transfer.find_transfer_runs(mono_only)
    # drop the monolingual ru runs: the en+ru and fr+ru runs scored on ru lack their baseline
    fin = cube_lib.final(cube)
    keep = [i for i in range(cube.sizes["run"]) if not (fin["mix"].sel(src="ru").values[i] == 1.0)]
    # the other direction (en, fr as targets) is still scored, with a warning naming what to add
    with pytest.warns(UserWarning, match=r"no monolingual baseline for target 'ru' at N=1e\+07, needed by bilingual "
                                         r"run\(s\) r\d+ \(ru\+en\).*add a run with mix ru=1 at N=1e\+07"):
        runs = transfer.find_transfer_runs(cube.isel(run=keep))
    assert ("en", "ru") in runs.bi and not any(t == "ru" for t, _ in runs.bi)
    # with no baseline at all, nothing can be scored: an error
    no_mono = [i for i in range(cube.sizes["run"]) if fin["mix"].values[i].max() < 1.0]
    with pytest.raises(ValueError, match=r"no monolingual baseline for target"):
        transfer.find_transfer_runs(cube.isel(run=no_mono))
    two_sizes = _cube(seeds=1, langs=["en", "fr"], N=(1e7, 2e7))
    with pytest.raises(ValueError, match=r"several model sizes N = \[10000000.0, 20000000.0\]; choose one with --N"):
        transfer.find_transfer_runs(two_sizes)
    with pytest.raises(ValueError, match=r"no bilingual 50/50 runs at N=3e\+07"):
        transfer.find_transfer_runs(two_sizes, N=3e7)
    one_point = cube_lib.final(cube)  # no step dim, one budget: no curve at all
    with pytest.raises(ValueError, match=r"learning curves needed: the cube has no checkpoints \(step dim\) and these "
                                         r"configurations have fewer than 3 token budgets: r0000, .*add runs at more budgets"):
        transfer.transfer_scores(one_point, **FAST)
    with pytest.raises(ValueError, match=r"horizon must be a positive token count; got \[-1.0\]"):
        transfer.transfer_scores(cube, horizon=-1.0, **FAST)  # refused before any fitting


def test_warns_exactly_when_diagnostics_are_bad(scored):
    scores, caught = scored
    d = scores.attrs["diagnostics"]
    bad = {"R-hat": d["max_r_hat"] > 1.01, "bulk ESS": d["min_ess_bulk"] < 400, "tail ESS": d["min_ess_tail"] < 400,
           "divergent": d["divergences"] > 0}
    for what, is_bad in bad.items():
        said = [str(w.message) for w in caught if what in str(w.message)]
        assert bool(said) == is_bad, (what, d)
        assert all(m.startswith("learning-curve fits behind the transfer scores: ") for m in said)


def test_warn_diagnostics_messages():
    from atlas_bayes.nuts import warn_diagnostics

    good = {"max_r_hat": 1.001, "min_ess_bulk": 900.0, "min_ess_tail": 800.0, "divergences": 0}
    assert warn_diagnostics(good, what="m") == []
    with pytest.warns(DiagnosticsWarning) as rec:
        warn_diagnostics({"max_r_hat": 1.2, "min_ess_bulk": 50.0, "min_ess_tail": 900.0, "divergences": 3}, what="m")
    text = [str(w.message) for w in rec]
    assert text[0] == "m: max R-hat = 1.200 > 1.01: chains disagree; run more warmup/draws (--warmup, --draws)"
    assert text[1].startswith("m: min bulk ESS = 50 < 400") and "raise --target-accept" in text[2]


def _atlas_fit(tau_draws: dict, cube):
    config = results.FitConfig(law="atlas", target="en", method="nuts", sources=tuple(tau_draws))
    post = {f"tau_{s}": v.reshape(2, -1) for s, v in tau_draws.items()}
    post |= {k: np.full((2, post[next(iter(post))].shape[1]), v) for k, v in BASE.items()} | {"tau_other": np.zeros((2, 200))}
    return results.make_result(config=config, posterior=post, estimate={}, x={"N": np.array([1e7])}, loss=np.array([3.0]),
                               run=np.array(["r0"]), cube=cube)


def test_compare_tau(scores, cube):
    rng = np.random.default_rng(0)
    fit = _atlas_fit({"fr": 0.5 + 0.05 * rng.standard_normal(400), "ru": 0.6 + 0.05 * rng.standard_normal(400)}, cube)
    table = transfer.compare_tau(fit, scores)
    assert list(table.index) == ["fr", "ru"]
    assert table.loc["fr", "bts_lower"] < 0.5 < table.loc["fr", "bts_upper"]  # tau = BTS / (2 - BTS) recovers 0.5
    assert bool(table.loc["fr", "agree"]) and not bool(table.loc["ru", "agree"])  # ru's fitted 0.6 vs true -0.2
    fit_none = _atlas_fit({"de": np.zeros(400)}, cube)
    with pytest.raises(ValueError, match=r"none of the fit's co-sampled sources \['de'\] has a measured BTS"):
        transfer.compare_tau(fit_none, scores)


def test_transfer_cli_json(cube, tmp_path, capsys):
    path = cube_lib.save(cube, tmp_path / "cube.nc")
    out = tmp_path / "transfer.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        code = main(["transfer", str(path), "--out", str(out), "--draws", "300", "--warmup", "300", "--chains", "2", "--json"])
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["cells"]) == 6 and info["points"] == "checkpoints"
    cell = next(c for c in info["cells"] if (c["target"], c["source"]) == ("en", "fr"))
    assert cell["lower"] <= cell["mean"] <= cell["upper"] and isinstance(cell["uncertain"], bool)
    back = cube_lib.read_netcdf(out)
    assert back["bts"].dims == ("target", "source", "horizon", "draw") and back.attrs["diagnostics"]["chains"] == 2
    png = tmp_path / "transfer.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rng = np.random.default_rng(0)
    fit_path = _atlas_fit({"fr": 0.5 + 0.05 * rng.standard_normal(400)}, cube).save(tmp_path / "atlas_fit.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        assert main(["transfer", str(path), "--out", str(out), "--draws", "300", "--warmup", "300", "--chains", "2",
                     "--compare-fit", str(fit_path)]) == 0
    text = capsys.readouterr().out
    assert "ATLAS tau of" in text and "agree" in text and "d_mono =" in text
    assert main(["transfer", str(path), "--out", str(out), "--horizon", "1e9,x"]) == 2
    assert "--horizon expects numbers separated by commas" in capsys.readouterr().err


# ----------------------------------------------------------------------------- hierarchical model


def _simulated_matrix(langs, *, gamma_script, gamma_family, seed=0):
    rng = np.random.default_rng(seed)
    from atlas_bayes import languages

    f = languages.pair_features(langs)
    n = len(langs)
    a, b = 0.3 * rng.standard_normal(n), 0.1 * rng.standard_normal(n)
    mu = -0.3 + a[:, None] + b[None, :] + gamma_script * f["shared_script"] + gamma_family * f["shared_family"]
    y = mu + 0.05 * rng.standard_normal((n, n))
    np.fill_diagonal(y, np.nan)
    return pd.DataFrame(np.round(y, 1), index=langs, columns=langs)


def test_hierarchical_model_recovers_effects_and_predicts_held_out_cells():
    langs = ["en", "de", "fr", "es", "ru", "uk", "zh", "ja", "ar", "he"]
    values = _simulated_matrix(langs, gamma_script=0.3, gamma_family=0.15)
    check = transfer_model.holdout_check(values, frac=0.25, seed=1, draws=1000, warmup=500)
    eff = check["effects"]
    assert eff["shared_script"]["lower"] < 0.3 < eff["shared_script"]["upper"]
    assert eff["shared_family"]["lower"] < 0.15 < eff["shared_family"]["upper"]
    assert eff["shared_script"]["lower"] > 0  # a real effect is found, not just covered
    # the held-out cells are predicted within their noise (residual sd 0.05 + rounding) and intervals cover them
    assert check["mae"] < 0.12 and check["coverage"] >= 0.75
    assert check["mae"] < check["baseline_mean_mae"]
    assert check["diagnostics"]["divergences"] == 0


def test_paper_matrix_and_model_errors():
    m = transfer_model.paper_matrix()
    assert m.shape == (38, 38) and np.isnan(np.diag(m.to_numpy())).all()
    assert list(m.index[:9]) == list(transfer_model.PAPER_MEASURED)
    assert m.loc["en", "fr"] == pytest.approx(0.2)  # BTS(fr -> en), row = target
    with pytest.raises(ValueError, match=r"must be square with the same languages on both axes"):
        transfer_model.fit_transfer_matrix(m.iloc[:3, :4])
    with pytest.raises(ValueError, match=r"needs at least 3 measured cells; got 2"):
        transfer_model.fit_transfer_matrix(m.iloc[:2, :2])
    unknown = pd.DataFrame(np.full((3, 3), 0.1), index=["en", "fr", "xx"], columns=["en", "fr", "xx"])
    with pytest.raises(ValueError, match=r"no script/family metadata for language\(s\) \['xx'\]"):
        transfer_model.fit_transfer_matrix(unknown)


# ----------------------------------------------------------------------------- the shipped experiment


def _tiny_sweep(name, *, factor, scales=("s01",)):
    """A shipped experiment sweep at toy size: smallest scales, budgets / ``factor``, short sequences."""
    import dataclasses

    from trainer import sweep as sweep_lib

    s = sweep_lib.load_sweep(name)

    def shrink(g):
        optim = dataclasses.replace(g.train.optim, warmup_steps=3)
        train = dataclasses.replace(g.train, batch_size=8, optim=optim, eval_points=3)
        base = tuple((k, v / factor if k == "tokens" else v) for k, v in g.base) if isinstance(g.base, tuple) else g.base
        return dataclasses.replace(g, scales=scales if g.scales else g.scales, tokens=tuple(t / factor for t in g.tokens),
                                   train=train, base=base)

    data = dataclasses.replace(s.data, seq_len=32, test_tokens=512)
    return dataclasses.replace(s, data=data, groups=tuple(shrink(g) for g in s.groups))


@pytest.mark.slow
def test_exp_transfer_sweep_end_to_end(tmp_path):
    from trainer import sweep as sweep_lib

    only = ["mono.*mono:ama.*", "mono.*mono:ami.*", "mono.*mono:bel.*", "bi.*bi:ama+ami.*", "bi.*bi:ama+bel.*"]
    res = sweep_lib.run_sweep(_tiny_sweep("exp_transfer", factor=16), out=tmp_path / "cube.nc", progress=False, only=only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        s = transfer.transfer_scores(res.cube, **FAST)
    assert s.attrs["points"] == "finals"  # four budgets per configuration
    assert set(map(tuple, np.argwhere(s["measured"].values))) == {(0, 1), (0, 2), (1, 0), (2, 0)}
    assert np.all(np.isfinite(s["mean"].values[s["measured"].values]))
    assert res.cube.attrs["language_metadata"]["ama"]["script"] == "Latn"  # metadata travel with the cube
