"""Fit results: one format for every method, saved and loaded exactly, summarised the same way."""

import jax
import numpy as np
import pytest
import xarray as xr

from atlas_bayes import noise, point, results, simulate


@pytest.fixture(scope="module")
def point_fit():
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10])
    cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(1), sigma=0.01)
    return point.fit_point(cube, "chinchilla", bootstrap=40, max_starts=200)


def _bayes_like(*, shift=0.0, diverging=0):
    """A 4-chain posterior; ``shift`` moves one chain away (bad R-hat)."""
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4, 500))
    draws[0] += shift
    config = results.FitConfig(law="chinchilla", target="xx", method="nuts")
    stats = {"diverging": np.zeros((4, 500), dtype=bool)}
    stats["diverging"].flat[:diverging] = True
    cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla"], simulate.grid(N=[1e7], D=[1e9]),
                                  key=jax.random.key(0))
    return results.make_result(
        config=config, posterior={"E": 1.8 + 0.01 * draws, "alpha": 0.3 + 0.01 * draws.T.reshape(4, 500)},
        estimate={}, x={"N": np.array([1e7]), "D": np.array([1e9])}, loss=np.array([3.0]), run=np.array(["r0000"]),
        cube=cube, sample_stats=stats,
    )


def test_save_load_round_trip(point_fit, tmp_path):
    path = point_fit.save(tmp_path / "fit.nc")
    back = results.load_fit(path)
    assert back.config == point_fit.config
    assert back.estimate == pytest.approx(point_fit.estimate)
    xr.testing.assert_identical(back.cube, point_fit.cube)
    xr.testing.assert_allclose(back.idata.posterior, point_fit.idata.posterior)
    assert results.to_json(back) == results.to_json(point_fit)


def test_point_summary_uses_the_optimum_and_bootstrap_spread(point_fit):
    table = results.summary(point_fit, level=0.8)
    assert list(table.index) == ["E", "A", "B", "alpha", "beta", "sigma"]
    assert table.loc["alpha", "estimate"] == point_fit.estimate["alpha"]
    assert table.loc["alpha", "lower"] < table.loc["alpha", "upper"]
    assert np.isnan(table.loc["alpha", "r_hat"])  # no chains to compare for a bootstrap
    out = results.to_json(point_fit, level=0.8)
    assert out["method"] == "point" and out["level"] == 0.8
    assert set(out["params"]["E"]) == {"estimate", "sd", "lower", "upper", "r_hat", "ess_bulk", "ess_tail", "fixed"}
    assert out["params"]["E"]["r_hat"] is None


def test_params_for_and_target_checks(point_fit):
    params = point_fit.params_for()
    assert set(params) == {"E", "A", "B", "alpha", "beta", "sigma"}
    assert params["E"].shape == (40 - point_fit.config.options["bootstrap_failed"],)
    with pytest.raises(ValueError, match=r"this fit is for target\(s\) \['xx'\], not 'fr'; refit with --target fr"):
        point_fit.params_for("fr")


def test_diagnostics_warn_with_the_fix():
    good = _bayes_like()
    assert results.check_diagnostics(good) == []
    d = results.diagnostics(good)
    assert d["max_r_hat"] < 1.01 and d["min_ess_bulk"] > 400 and d["divergences"] == 0
    bad = _bayes_like(shift=3.0, diverging=7)
    with pytest.warns(results.DiagnosticsWarning) as record:
        problems = results.check_diagnostics(bad)
    text = " ".join(str(r.message) for r in record)
    assert len(problems) == len(record) >= 2
    assert "max R-hat" in text and "run more warmup/draws" in text
    assert "7 divergent transitions" in text and "--target-accept" in text


def test_bad_level_and_non_fit_files(point_fit, tmp_path):
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        results.summary(point_fit, level=90)
    from atlas_bayes import cube as cube_lib

    cube_path = cube_lib.save(point_fit.cube, tmp_path / "cube.nc")
    with pytest.raises(ValueError, match="is not an atlas fit"):
        results.load_fit(cube_path)


def test_noise_draws_have_the_posterior_scale():
    key = jax.random.key(0)
    params = {"sigma": np.array([0.01, 0.1]), "nu": np.array([3.0, 3.0])}
    eps = np.asarray(noise.sample_log_noise(key, params, (20000,)))
    assert eps.shape == (2, 20000)
    np.testing.assert_allclose(eps.std(axis=1), [0.01, 0.1], rtol=0.03)  # 20000 draws: sd error ~0.5%
    heavy = np.asarray(noise.sample_log_noise(key, params, (20000,), likelihood="student_t"))
    assert np.abs(heavy[1]).max() > np.abs(eps[1]).max()  # heavier tails
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        noise.sample_log_noise(key, params, (3,), likelihood="laplace")
    with pytest.raises(ValueError, match="needs posterior draws of 'nu'"):
        noise.sample_log_noise(key, {"sigma": params["sigma"]}, (3,), likelihood="student_t")


def test_simulated_noise_level():
    runs = simulate.grid(N=np.geomspace(1e7, 1e9, 10), D=np.geomspace(1e9, 1e11, 10))
    clean = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla"], runs, key=jax.random.key(0), sigma=0.0)
    noisy = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla"], runs, key=jax.random.key(0), sigma=0.02)
    resid = np.log(noisy["loss"].values / clean["loss"].values)
    assert resid.std() == pytest.approx(0.02, rel=0.2)  # 100 residuals: relative sd error ~7%
    with pytest.raises(ValueError, match=r"parameters \['beta'\] of law 'chinchilla' are missing"):
        simulate.simulate_cube("chinchilla", {k: v for k, v in simulate.PAPER["chinchilla"].items() if k != "beta"},
                               runs, key=jax.random.key(0))
