import os

import numpy as np
import pytest
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes.cube import CubeError


def _bilingual(step=False):
    """Three runs over en/fr/sw, evaluated on en and fr."""
    mix = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    U = np.array([[np.inf, np.inf, 1e6], [np.inf, 2e6, 1e6], [np.inf, 2e6, 1e6]])
    if step:
        loss = np.array([[[3.0, 2.8], [np.nan, np.nan]], [[3.1, 2.9], [3.2, 3.0]], [[3.2, np.nan], [3.3, np.nan]]])
        D = np.array([[1e6, 2e6], [1e6, 2e6], [1e6, np.nan]])
    else:
        loss = np.array([[3.0, np.nan], [3.1, 3.2], [3.2, 3.3]])
        D = np.array([1e7, 1e7, 2e7])
    return cube_lib.make_cube(
        loss=loss, N=np.array([1e5, 1e5, 2e5]), D=D, mix=mix, U=U,
        lang=["en", "fr"], src=["en", "fr", "sw"], seed=[0, 0, 1],
        kind=["pretrain", "pretrain", "finetune"], base=["", "", "r0000"], units="bits/byte",
        attrs={"config": {"scales": [1, 2], "ok": True}, "note": "x"},
    )


def test_glossary_dims_and_units():
    c = _bilingual()
    assert c["loss"].dims == ("run", "lang") and c["mix"].dims == ("run", "src")
    assert c["loss"].attrs["units"] == "bits/byte"
    assert c["run"].values.tolist() == ["r0000", "r0001", "r0002"]


def test_netcdf_round_trip_is_exact(tmp_path):
    for step in (False, True):
        c = _bilingual(step=step)
        path = cube_lib.save(c, tmp_path / f"c{step}.nc")
        back = cube_lib.load(path)
        xr.testing.assert_identical(c, back)
        assert back.attrs["config"] == {"scales": [1, 2], "ok": True}  # dict attrs survive


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path, monkeypatch):
    c = _bilingual()
    path = tmp_path / "c.nc"
    cube_lib.save(c, path)
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        cube_lib.save(c.assign(N=c["N"] * 2), path)
    assert path.read_bytes() == before  # the previous file is untouched
    assert os.listdir(tmp_path) == ["c.nc"]


def test_derived_quantities():
    c = _bilingual()
    tok = cube_lib.tokens_per_source(c)
    np.testing.assert_allclose(tok.sel(run="r0002").values, [5e6, 5e6, 1e7])
    ep = cube_lib.epochs(c)
    assert float(ep.sel(run="r0002", src="sw")) == pytest.approx(10.0)  # 0.5 * 2e7 / 1e6
    assert float(ep.sel(run="r0000", src="en")) == 0.0  # unconstrained
    np.testing.assert_allclose(cube_lib.compute(c).values, [6e12, 6e12, 2.4e13])
    assert cube_lib.num_languages(c).values.tolist() == [1, 2, 3]


def test_cosampled_counts_runs_then_weight():
    c = _bilingual()
    # fr is sampled with en in two runs and with sw in one
    assert cube_lib.cosampled(c, "fr") == ("en", "sw")
    assert cube_lib.cosampled(c, "fr", k=1) == ("en",)
    assert cube_lib.cosampled(c, "sw") == ("en", "fr")  # tie on counts (1 each): weight 0.25 = 0.25, then name
    with pytest.raises(ValueError, match="target 'de' is not a training language"):
        cube_lib.cosampled(c, "de")


def test_final_takes_the_last_finite_checkpoint():
    f = cube_lib.final(_bilingual(step=True))
    assert "step" not in f.dims
    np.testing.assert_allclose(f["D"].values, [2e6, 2e6, 1e6])
    np.testing.assert_allclose(f["loss"].sel(lang="en").values, [2.8, 2.9, 3.2])


class TestValidation:
    def test_reports_every_problem_with_coordinates(self):
        c = _bilingual()
        bad = c.copy(deep=True)
        bad["loss"][0, 0] = -1.0
        bad["loss"][1, 1] = np.inf
        bad["N"][2] = 0.0
        bad["mix"][1, 0] = 0.7
        with pytest.raises(CubeError) as info:
            cube_lib.validate(bad)
        msg = str(info.value)
        assert "4 problems" in msg
        assert "loss must be positive; non-positive at run='r0000' (N=1e+05), lang='en'" in msg
        assert "loss is infinite at run='r0001' (N=1e+05), lang='fr'" in msg
        assert "N must be a positive finite parameter count; bad at run='r0002'" in msg
        assert "mix must sum to 1 over src (tolerance 1e-06); sums 1.2" in msg

    def test_missing_variable_and_dim(self):
        c = _bilingual()
        with pytest.raises(CubeError, match="missing variable 'U'"):
            cube_lib.validate(c.drop_vars("U"))
        with pytest.raises(CubeError, match=r"variable 'mix' has dims \('run',\); missing dim\(s\) \['src'\]"):
            cube_lib.validate(c.assign(mix=c["mix"].isel(src=0)))

    def test_kind_and_units(self):
        c = _bilingual()
        with pytest.raises(CubeError, match=r"kind must be one of \['pretrain', 'finetune'\]; got continued"):
            cube_lib.validate(c.assign(kind=c["kind"].copy(data=np.array(["continued", "pretrain", "pretrain"], dtype=object))))
        bad = c.copy()
        bad["loss"].attrs = {}
        with pytest.raises(CubeError, match="units"):
            cube_lib.validate(bad)

    def test_nan_u_and_negative_mix(self):
        c = _bilingual()
        u = c["U"].copy()
        u[0, 0] = np.nan
        with pytest.raises(CubeError, match="U must be a positive token count or inf"):
            cube_lib.validate(c.assign(U=u))
        with pytest.raises(CubeError, match="mix weights must be finite and >= 0"):
            cube_lib.validate(c.assign(mix=-c["mix"]))

    def test_load_rejects_non_netcdf(self, tmp_path):
        p = tmp_path / "x.nc"
        p.write_text("not a netcdf file")
        with pytest.raises(CubeError, match="is not a readable netCDF file"):
            cube_lib.load(p)
        with pytest.raises(FileNotFoundError, match="no such file"):
            cube_lib.load(tmp_path / "missing.nc")

    def test_mix_required_for_several_sources(self):
        with pytest.raises(CubeError, match="mix is required when there are several training languages"):
            cube_lib.make_cube(loss=np.ones((2, 2)), N=[1, 2], D=[1, 2], lang=["a", "b"])
