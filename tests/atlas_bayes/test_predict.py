"""Predictive queries: the shared schema, noise on top of the law, extrapolation warnings, grids, the CLI."""

import json

import jax
import numpy as np
import pandas as pd
import pytest

from atlas_bayes import cube as cube_lib
from atlas_bayes import point, predict, results, simulate
from atlas_bayes.cli import main

TRUTH = simulate.PAPER["chinchilla_refit"]
ROW_KEYS = {"N", "D", "lang", "mean", "median", "lower", "upper", "law_mean", "law_lower", "law_upper", "sd", "mix"}


@pytest.fixture(scope="module")
def cube():
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10])
    return simulate.simulate_cube("chinchilla", TRUTH, runs, key=jax.random.key(0), sigma=0.02)


@pytest.fixture(scope="module")
def fit(cube):
    return point.fit_point(cube, "chinchilla", bootstrap=60, max_starts=100)


def test_schema_and_rows(fit):
    ds = predict.predict(fit, N="1e8,2e8", D=1e10, level=0.8)
    assert dict(ds.sizes) == {"config": 2, "lang": 1, "src": 1}
    for name in ("mean", "sd", "median", "lower", "upper", "law_mean", "law_lower", "law_upper"):
        assert ds[name].dims == ("config", "lang"), name
    assert ds["mix"].dims == ("config", "src") and ds["U"].dims == ("config", "src")
    assert ds.attrs["level"] == 0.8 and ds.attrs["source"] == "fit" and ds.attrs["law"] == "chinchilla"
    assert ds.attrs["units"] == "nats/token" and ds.attrs["target"] == "xx"
    np.testing.assert_array_equal(ds["extrapolation"].values, [1.0, 1.0])  # inside the fitted range
    assert np.all(ds["lower"] < ds["median"]) and np.all(ds["median"] < ds["upper"])
    # a new run scatters around the law: its interval contains the law's (parameter-only) interval
    assert np.all(ds["lower"] < ds["law_lower"]) and np.all(ds["law_upper"] < ds["upper"])
    assert float(ds["law_mean"][1, 0]) < float(ds["law_mean"][0, 0])  # bigger model, lower loss
    rows = predict.to_rows(ds)
    assert len(rows) == 2 and set(rows[0]) == ROW_KEYS and rows[0]["mix"] == {"xx": 1.0}
    assert rows[0]["N"] == 1e8 and rows[0]["lang"] == "xx"


def test_noise_is_the_fits_noise(fit):
    """mean of L exp(eps) = E[L] exp(sigma^2 / 2); its spread is sigma L (log-normal noise)."""
    ds = predict.predict(fit, N=1e8, D=1e10, seed=3)
    sigma = float(np.median(fit.params_for()["sigma"]))
    law = float(ds["law_mean"][0, 0])
    # 60 bootstrap draws x one noise draw each: the mean is known to ~sigma / sqrt(60) relative
    assert float(ds["mean"][0, 0]) == pytest.approx(law, rel=4 * sigma / np.sqrt(60))
    clean = predict.law_draws(fit, "xx", np.array([1e8]), np.array([1e10]), np.ones((1, 1)), np.full((1, 1), np.inf), ["xx"])
    expected = np.sqrt(clean.var(ddof=1) + (sigma * law) ** 2)  # parameter spread plus the noise
    assert float(ds["sd"][0, 0]) == pytest.approx(expected, rel=0.3)  # sd of 60 draws: ~10% error


def test_extrapolation_warns_by_how_much(fit):
    with pytest.warns(predict.ExtrapolationWarning, match=r"lies 333x outside the fitted range \(N 1e\+07\.\.3e\+08"):
        ds = predict.predict(fit, N=1e11, D=1e10)
    assert float(ds["extrapolation"][0]) == pytest.approx(1e11 / 3e8)


def test_prediction_after_load_needs_no_refit(fit, tmp_path):
    back = results.load_fit(fit.save(tmp_path / "fit.nc"))
    a = predict.predict(fit, N=1e8, D=1e10, seed=1)
    b = predict.predict(back, N=1e8, D=1e10, seed=1)
    for name in ("mean", "lower", "upper", "law_mean"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12)


def test_parse_configs_from_a_grid_file(tmp_path):
    path = tmp_path / "configs.csv"
    pd.DataFrame({"N": [1e8, 2e8], "D": [1e10, 2e10], "lang": ["fr", "en"], "mix:fr": [1.0, 0.5], "mix:en": [0.0, 0.5],
                  "U:fr": [1e9, np.nan]}).to_csv(path, index=False)
    c = predict.parse_configs(grid=path)
    assert c.srcs == ("fr", "en") and c.lang.tolist() == ["fr", "en"]
    np.testing.assert_array_equal(c.mix, [[1.0, 0.0], [0.5, 0.5]])
    assert c.U[0, 0] == 1e9 and np.isinf(c.U[1, 0]) and c.U_given.tolist() == [[True, False], [False, False]]
    both = predict.parse_configs(N="1e8,2e8", D="1e10,1e11", U="fr=3e9", mix="fr=0.5,en=0.5")
    assert len(both.N) == 4 and both.U[:, 0].tolist() == [3e9] * 4 and np.isinf(both.U[:, 1]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(N="1e8"), r"give --N and --D \(or --grid configs.csv\)"),
        (dict(N="big", D=1e10), "--N expects numbers separated by commas"),
        (dict(N=-1.0, D=1e10), "--N must be positive finite numbers"),
        (dict(N=1e8, D=1e10, mix="fr=0.5,en=0.4"), "--mix: mixture weights must sum to 1; they sum to 0.9"),
        (dict(N=1e8, D=1e10, mix="fr=half"), "--mix: value for 'fr' must be a number"),
        (dict(N=1e8, D=1e10, U=1e9), "--U as one number applies to the languages of --mix"),
        (dict(N=1e8, grid="x.csv"), "give either --grid or --N/--D, not both"),
    ],
)
def test_parse_configs_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict.parse_configs(**kwargs)


def test_grid_columns_are_checked(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"N": [1e8], "D": [1e10], "flops": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"grid columns must be N, D, \[lang\].*unknown \['flops'\]"):
        predict.parse_configs(grid=path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        predict.parse_configs(grid=tmp_path / "missing.csv")


def test_unknown_languages_and_targets_list_the_valid_ones(fit):
    with pytest.raises(ValueError, match=r"unknown language\(s\) \['fr'\] in --mix/--U; the fit's training languages are \['xx'\]"):
        predict.predict(fit, N=1e8, D=1e10, mix="fr=1")
    with pytest.raises(ValueError, match=r"this fit is for target\(s\) \['xx'\], not 'fr'"):
        predict.predict(fit, N=1e8, D=1e10, target="fr")


def _two_target_fit():
    """A hand-made posterior over two targets (lang dim), as a pooled Bayesian fit stores it."""
    runs = simulate.grid(N=[1e7, 1e8], D=[1e9, 1e10], mixtures=[{"fr": 1.0}, {"en": 1.0}, {"en": 0.5, "fr": 0.5}], U={"fr": 2e9})
    cube = simulate.simulate_cube("atlas_mono", dict(TRUTH, lam=0.1), runs, key=jax.random.key(0), targets=["fr", "en"])
    rng = np.random.default_rng(0)
    post = {k: np.stack([np.full((2, 50), v), np.full((2, 50), v * (1.05 if k == "E" else 1.0))], axis=-1)
            * (1 + 0.01 * rng.normal(size=(2, 50, 2))) for k, v in dict(TRUTH, lam=0.1).items()}
    post["sigma"] = np.full((2, 50, 2), 0.01)
    config = results.FitConfig(law="atlas_mono", target="fr,en", method="nuts",
                               options={"targets": ["fr", "en"], "sources_by_target": {"fr": [], "en": []}})
    x = {"N": np.array([1e7, 1e8]), "D": np.array([1e9, 1e10])}
    return results.make_result(config=config, posterior=post, estimate={}, x=x, loss=np.ones(2), run=np.array(["a", "b"]),
                               cube=cube, dims={k: ("lang",) for k in post}, coords={"lang": ["fr", "en"]})


def test_multi_target_fits_and_cube_unique_tokens():
    fit = _two_target_fit()
    ds = predict.predict(fit, N=1e8, D=1e10, mix="fr=0.5,en=0.5", U="fr=inf")
    assert ds["lang"].values.tolist() == ["fr", "en"]
    assert float(ds["law_mean"].sel(lang="en")[0]) > float(ds["law_mean"].sel(lang="fr")[0])  # en's E is 5% higher
    default = predict.predict(fit, N=1e8, D=1e10, mix="fr=0.5,en=0.5")
    np.testing.assert_array_equal(default["U"].sel(src="fr").values, [2e9])  # every run of the cube has U(fr) = 2e9
    assert np.isinf(ds["U"].sel(src="fr").values).all()
    repeated = predict.predict(fit, N=1e8, D=1e10, target="fr")  # 1e10 fr tokens from 2e9 unique: saturated
    free = predict.predict(fit, N=1e8, D=1e10, target="fr", U="fr=inf")
    assert float(repeated["law_mean"][0, 0]) > float(free["law_mean"][0, 0])
    with pytest.raises(ValueError, match="depends on the training mixture: give --mix"):
        predict.predict(fit, N=1e8, D=1e10)
    grid = pd.DataFrame({"N": [1e8, 1e8], "D": [1e10, 1e10], "lang": ["fr", "en"], "mix:fr": [1.0, 0.5], "mix:en": [0.0, 0.5]})
    rows = predict.to_rows(predict.predict(fit, grid=grid))
    assert [(r["lang"], r["mix"]) for r in rows] == [("fr", {"fr": 1.0}), ("en", {"fr": 0.5, "en": 0.5})]
    with pytest.raises(ValueError, match=r"grid lang \['de'\] not covered: this fit is for target\(s\) \['fr', 'en'\]"):
        predict.predict(fit, grid=grid.assign(lang=["fr", "de"]))


def test_cli_predict(fit, tmp_path, capsys):
    path = str(fit.save(tmp_path / "fit.nc"))
    assert main(["predict", path, "--N", "1e8", "--D", "1e10,3e10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and set(rows[0]) == ROW_KEYS
    assert main(["predict", path, "--N", "1e8", "--D", "1e10", "--level", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "50% lower" in text and "law" in text and "noise included" in text
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"N": [1e8], "D": [1e10]}).to_csv(grid, index=False)
    assert main(["predict", path, "--grid", str(grid), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["predict", path, "--N", "1e8", "--D", "1e10", "--target", "fr"]) == 2
    err = capsys.readouterr().err
    assert "this fit is for target(s) ['xx'], not 'fr'" in err and err.count("\n") == 1
    cube_path = str(cube_lib.save(fit.cube, tmp_path / "cube.nc"))
    assert main(["predict", cube_path, "--N", "1e8", "--D", "1e10"]) == 2
    assert "is not an atlas fit" in capsys.readouterr().err
