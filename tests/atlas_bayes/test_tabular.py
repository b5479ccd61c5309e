import numpy as np
import pandas as pd
import pytest
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import tabular
from atlas_bayes.cube import CubeError


def _mixture_table():
    rows = []
    for run, (N, mix) in enumerate([(1e6, {"en": 1.0}), (1e6, {"en": 0.5, "fr": 0.5}), (2e6, {"fr": 0.8, "sw": 0.2})]):
        for lang in ("en", "fr"):
            row = {"run": f"run{run}", "lang": lang, "N": N, "D": 1e8, "loss": 3.0 + run * 0.1 + (lang == "fr") * 0.05,
                   "seed": run}
            row.update({f"mix:{s}": w for s, w in mix.items()})
            rows.append(row)
    df = pd.DataFrame(rows)
    df["U:sw"] = 1e6
    return df


def test_three_columns_make_a_monolingual_cube_named_xx():
    c = tabular.from_table(pd.DataFrame({"N": [1e6, 2e6], "D": [1e8, 1e8], "loss": [3.0, 2.8]}))
    assert cube_lib.languages(c) == ["xx"] and c["src"].values.tolist() == ["xx"]
    assert c.sizes["run"] == 2 and np.all(c["mix"].values == 1) and np.all(np.isinf(c["U"].values))


def test_mixture_columns():
    c = tabular.from_table(_mixture_table())
    assert c["src"].values.tolist() == ["en", "fr", "sw"]
    np.testing.assert_allclose(c["mix"].sel(run="run2").values, [0.0, 0.8, 0.2])  # blank mix = 0
    np.testing.assert_allclose(c["U"].sel(src="sw").values, 1e6)
    assert np.isinf(c["U"].sel(src="en").values).all()  # no U column = unconstrained
    assert float(c["loss"].sel(run="run1", lang="fr")) == pytest.approx(3.15)


def test_monolingual_runs_per_language_with_u_column():
    df = pd.DataFrame({"lang": ["en", "sw", "en"], "N": [1e6, 1e6, 2e6], "D": [1e8] * 3, "loss": [3.0, 3.5, 2.9],
                       "U": [np.inf, 1e7, np.inf]})
    c = tabular.from_table(df)
    assert c.sizes["run"] == 3
    r_sw = [r for r in c["run"].values if float(c["mix"].sel(run=r, src="sw")) == 1.0]
    assert float(c["U"].sel(run=r_sw[0], src="sw")) == 1e7


def test_step_column_builds_learning_curves():
    df = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 2, "step": [1, 2, 3, 1, 2], "N": [1e6] * 5,
                       "D": [1e7, 2e7, 3e7, 1e7, 2e7], "loss": [3.0, 2.9, 2.8, 3.1, 3.0]})
    c = tabular.from_table(df)
    assert c["loss"].dims == ("run", "lang", "step") and c["D"].dims == ("run", "step")
    assert np.isnan(float(c["D"].sel(run="b", step=3)))
    np.testing.assert_allclose(cube_lib.final(c)["D"].values, [3e7, 2e7])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_round_trip_through_files(tmp_path, suffix):
    c = tabular.from_table(_mixture_table(), units="bits/byte")
    path = tmp_path / f"runs.{suffix}"
    table = tabular.to_table(c)
    table.to_csv(path, index=False) if suffix == "csv" else table.to_parquet(path)
    back = tabular.import_table(path, units="bits/byte")
    assert back.attrs.pop("source") == str(path)
    xr.testing.assert_identical(c, back)


class TestValidation:
    def test_every_problem_at_once_with_file_lines(self, tmp_path):
        df = pd.DataFrame({"N": [1e6, -2, "abc", 1e7], "D": [1e9, 1e9, 1e9, np.nan], "loss": [3.0, np.nan, -1, np.inf],
                           "mix:en": [0.5, 1, 1, 1]})
        path = tmp_path / "bad.csv"
        df.to_csv(path, index=False)
        with pytest.raises(CubeError) as info:
            tabular.import_table(path, out=tmp_path / "cube.nc")
        msg = str(info.value)
        assert "invalid run table" in msg
        assert "column 'N' must be numeric; got 'abc' at line 4" in msg
        assert "loss is missing (NaN) at line 3" in msg
        assert "loss is infinite at line 5" in msg
        assert "loss must be positive at line 4" in msg
        assert "N must be a positive finite number; bad at line 3" in msg
        assert "D must be a positive finite number; bad at line 5" in msg
        assert "mix:<lang> weights must sum to 1 (tolerance 1e-06); sums 0.5 at line 2" in msg
        assert not (tmp_path / "cube.nc").exists()  # a refused import writes no file

    def test_unknown_and_missing_columns(self):
        with pytest.raises(CubeError, match=r"unknown column\(s\) \['flops'\]"):
            tabular.from_table(pd.DataFrame({"N": [1.0], "D": [1.0], "loss": [1.0], "flops": [6.0]}))
        with pytest.raises(CubeError, match=r"missing required column\(s\) \['D'\]"):
            tabular.from_table(pd.DataFrame({"N": [1.0], "loss": [1.0]}))

    def test_empty_table(self):
        with pytest.raises(CubeError, match="the table is empty"):
            tabular.from_table(pd.DataFrame({"N": [], "D": [], "loss": []}))

    def test_duplicates_suggest_a_seed_column(self):
        df = pd.DataFrame({"N": [1e6, 1e6], "D": [1e8, 1e8], "loss": [3.0, 3.1]})
        with pytest.raises(CubeError, match=r"duplicate rows for the same run x lang at rows 0, 1 \(add a seed or run column"):
            tabular.from_table(df)
        assert tabular.from_table(df.assign(seed=[0, 1])).sizes["run"] == 2

    def test_run_level_conflicts_and_multilingual_without_mix(self):
        df = pd.DataFrame({"run": ["a", "a"], "lang": ["en", "fr"], "N": [1e6, 2e6], "D": [1e8, 1e8], "loss": [3.0, 3.1]})
        with pytest.raises(CubeError) as info:
            tabular.from_table(df)
        assert "column 'N' differs between rows of the same run for run(s) a" in str(info.value)
        assert "evaluated on several languages but the table has no mix:<lang> columns" in str(info.value)

    def test_bad_kind_and_negative_u(self):
        df = pd.DataFrame({"N": [1e6, 2e6], "D": [1e8, 1e8], "loss": [3.0, 2.9], "kind": ["pretrain", "sft"], "U": [1e6, -1]})
        with pytest.raises(CubeError) as info:
            tabular.from_table(df)
        assert "kind must be one of ['pretrain', 'finetune']; got sft at row 1" in str(info.value)
        assert "U must be positive (or blank/inf for unconstrained); bad at row 1" in str(info.value)

    def test_drop_invalid_drops_and_reports(self):
        df = pd.DataFrame({"N": [1e6, 2e6, 3e6], "D": [1e8, 1e8, 1e8], "loss": [3.0, np.nan, 2.8]})
        with pytest.warns(UserWarning, match=r"dropped 1 invalid row\(s\) 1:\n  - loss is missing \(NaN\) at row 1"):
            c = tabular.from_table(df, drop_invalid=True)
        assert c.sizes["run"] == 2 and c.attrs["dropped_rows"] == [1]

    def test_malformed_files(self, tmp_path):
        p = tmp_path / "x.parquet"
        p.write_bytes(b"PAR1 not really")
        with pytest.raises(CubeError, match="is not a readable parquet file"):
            tabular.read_table(p)
        xlsx = tmp_path / "x.xlsx"
        xlsx.touch()
        with pytest.raises(CubeError, match=r"unsupported table format '\.xlsx'"):
            tabular.read_table(xlsx)
        with pytest.raises(FileNotFoundError, match="no such file"):
            tabular.read_table(tmp_path / "missing.csv")


def test_real_datablations_table_imports():
    """296 real runs (Muennighoff et al. 2023), shipped as package data."""
    from importlib.resources import files

    c = tabular.import_table(files("atlas_bayes") / "data" / "datablations_runs.csv")
    assert c.sizes["run"] == 296
    assert float(cube_lib.epochs(c).max()) == pytest.approx(9000.0)


def _foreign_table():
    """A table as another group publishes it: their names, extra columns, one training set per run."""
    return pd.DataFrame({
        "model": ["m1", "m1", "m2", "m2"], "params": [1e6, 1e6, 2e6, 2e6], "tokens": [1e8] * 4,
        "val_set": ["c4", "ptb", "c4", "ptb"], "dataset": ["c4", "c4", "rpj", "rpj"],
        "loss": [3.0, 3.4, 2.9, 3.3], "lr": [3e-3] * 4,
    })


def test_columns_map_a_foreign_table_and_src_names_the_training_set():
    c = tabular.from_table(
        _foreign_table(), columns={"N": "params", "D": "tokens", "lang": "val_set", "run": "model", "src": "dataset"},
        ignore=["lr"],
    )
    assert cube_lib.languages(c) == ["c4", "ptb"] and c["src"].values.tolist() == ["c4", "rpj"]
    np.testing.assert_allclose(c["mix"].sel(run="m2").values, [0.0, 1.0])
    assert c.attrs["ignored_columns"] == ["lr"] and c.attrs["column_mapping"]["N"] == "params"


def test_ignore_unknown_drops_every_column_atlas_does_not_use():
    c = tabular.from_table(_foreign_table(), columns={"N": "params", "D": "tokens", "lang": "val_set", "src": "dataset"},
                           ignore=["unknown"])
    assert set(c.attrs["ignored_columns"]) == {"model", "lr"}


def test_unknown_columns_error_suggests_the_mapping():
    with pytest.raises(CubeError, match=r"missing required column\(s\) \['N', 'D'\].*--columns N=params"):
        tabular.from_table(_foreign_table())


@pytest.mark.parametrize(
    ("columns", "ignore", "match"),
    [
        ({"size": "params"}, None, r"'size' is not an atlas column"),
        ({"N": "nparams"}, None, r"the table has no column 'nparams'"),
        ({"N": "params"}, ["nope"], r"cannot ignore column\(s\) \['nope'\]"),
    ],
)
def test_bad_column_mappings_are_named(columns, ignore, match):
    with pytest.raises(CubeError, match=match):
        tabular.from_table(_foreign_table(), columns=columns, ignore=ignore)


def test_src_column_and_mix_columns_together_are_refused():
    df = pd.DataFrame({"N": [1e6], "D": [1e8], "loss": [3.0], "src": ["en"], "mix:en": [1.0]})
    with pytest.raises(CubeError, match="either a src column or mix:<lang> columns"):
        tabular.from_table(df)


def test_blank_seed_is_named_not_cast():
    df = pd.DataFrame({"N": [1e6, 2e6], "D": [1e8, 1e8], "loss": [3.0, 2.8], "seed": [1, np.nan]})
    with pytest.raises(CubeError, match=r"seed must be a whole number; blank or fractional at row 1.*--ignore seed"):
        tabular.from_table(df)


def test_drop_invalid_keeps_one_of_exact_repeats_and_drops_conflicts():
    df = pd.DataFrame({"run": ["a", "a", "b", "b", "c"], "N": [1e6] * 5, "D": [1e8] * 5,
                       "loss": [3.0, 3.0, 2.9, 2.7, 2.8]})
    with pytest.raises(CubeError, match="duplicate rows .* rows 0, 1, 2, 3.*--drop-invalid keeps the first"):
        tabular.from_table(df)
    with pytest.warns(UserWarning, match=r"dropped 3 duplicate row\(s\).*1 exact repeats \(row 1\).*2 rows with conflicting losses \(rows 2, 3\)"):
        c = tabular.from_table(df, drop_invalid=True)
    assert c["run"].values.tolist() == ["a", "c"] and c.attrs["dropped_rows"] == [1, 2, 3]


def test_label_columns_can_join_several_of_theirs():
    df = pd.DataFrame({"model": ["m", "m"], "lr": [1e-3, 2e-3], "N": [1e6, 1e6], "D": [1e8, 1e8], "loss": [3.0, 3.1]})
    c = tabular.from_table(df, columns={"run": "model+lr"})
    assert c["run"].values.tolist() == ["m|0.001", "m|0.002"]
    with pytest.raises(CubeError, match="only the label columns run, lang, src and base can join"):
        tabular.from_table(df, columns={"N": "model+lr"})
