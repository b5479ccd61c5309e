"""The ``atlas`` command line as a user meets it: import, info, fit, and one-line errors."""

import json
from importlib.resources import files

import jax
import pandas as pd
import pytest

from atlas_bayes import cube as cube_lib
from atlas_bayes import simulate
from atlas_bayes.cli import main


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10])
    cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(0), sigma=0.01)
    return str(cube_lib.save(cube, tmp_path_factory.mktemp("cli") / "cube.nc"))


def test_import_then_info(tmp_path, capsys):
    out = tmp_path / "db.nc"
    assert main(["import", str(files("atlas_bayes") / "data" / "datablations_runs.csv"), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.exists()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "runs            296" in text and "max epochs per training language" in text and "9000" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["runs"] == 296 and info["languages"] == ["xx"] and info["max_epochs"]["xx"] == 9000


def test_import_maps_a_foreign_table(tmp_path, capsys):
    table = tmp_path / "theirs.csv"
    pd.DataFrame({"params": [1e6, 2e6, 1e6, 2e6], "tokens": [1e9] * 4, "val": ["c4", "c4", "ptb", "ptb"],
                  "data": ["c4"] * 4, "loss": [3.0, 2.9, 3.4, 3.3], "lr": [1e-3] * 4}).to_csv(table, index=False)
    out = tmp_path / "cube.nc"
    argv = ["import", str(table), "--out", str(out), "--columns", "N=params,D=tokens,lang=val,src=data", "--ignore", "unknown", "--json"]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["languages"] == ["c4", "ptb"] and info["sources"] == ["c4"] and info["runs"] == 2
    assert main(["import", str(table), "--out", str(out), "--columns", "N"]) == 2
    assert "--columns expects OURS=THEIRS pairs" in capsys.readouterr().err


def test_refused_import_is_one_line_and_writes_nothing(tmp_path, capsys):
    table = tmp_path / "bad.csv"
    pd.DataFrame({"N": [1e6, 2e6], "D": [1e9, 1e9], "loss": [3.0, -1.0], "flops": [1, 2]}).to_csv(table, index=False)
    out = tmp_path / "cube.nc"
    assert main(["import", str(table), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("atlas: error: invalid run table: 1 problem: unknown column(s) ['flops']")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_fit_point_json(cube_path, tmp_path, capsys):
    fit_path = tmp_path / "fit.nc"
    code = main(["fit", cube_path, "--law", "chinchilla", "--method", "point", "--bootstrap", "30", "--out", str(fit_path), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "chinchilla" and out["method"] == "point" and out["target"] == "xx"
    assert set(out["params"]) == {"E", "A", "B", "alpha", "beta", "sigma"}
    alpha = out["params"]["alpha"]
    assert alpha["lower"] <= alpha["estimate"] <= alpha["upper"]
    assert fit_path.exists()


def test_fit_human_output_and_fix(cube_path, capsys):
    assert main(["fit", cube_path, "--law", "chinchilla", "--fix", "E=1.817", "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "fixed: E=1.817" in text and "90% lower" in text and "bootstrap refits" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "{cube}", "--law", "kaplan"], "atlas: error: unknown law 'kaplan'; valid laws: chinchilla, dcsl, msl"),
        (["fit", "{cube}", "--law", "chinchilla", "--fix", "zeta=1"], "unknown parameter 'zeta' for law 'chinchilla'"),
        (["fit", "{cube}", "--law", "dcsl"], "needs the unique-token budget U of 'xx'"),
        (["fit", "{cube}", "--law", "chinchilla", "--target", "fr"], "unknown target 'fr'"),
        (["info", "missing.nc"], "atlas: error: no such file: 'missing.nc'"),
    ],
)
def test_errors_are_one_line(cube_path, capsys, args, message):
    assert main([a.format(cube=cube_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_debug_shows_the_traceback(cube_path):
    with pytest.raises(ValueError, match="unknown law"):
        main(["--debug", "fit", cube_path, "--law", "kaplan"])


def test_compile_cache_env():
    from atlas_bayes.cli import compile_cache_env

    env = compile_cache_env({"HOME": "/home/u"})
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/home/u/.cache/atlas/xla"
    assert float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) > 0
    assert int(env["JAX_COMPILATION_CACHE_MAX_SIZE"]) > 0  # bounded: JAX evicts the least recently used
    assert compile_cache_env({"XDG_CACHE_HOME": "/c", "HOME": "/home/u"})["JAX_COMPILATION_CACHE_DIR"] == "/c/atlas/xla"
    assert compile_cache_env({"HOME": "/home/u", "ATLAS_COMPILE_CACHE": "0"}) == {}
    assert compile_cache_env({"HOME": "/home/u", "JAX_COMPILATION_CACHE_DIR": "/mine"}) == {}


def test_the_cli_turns_the_compile_cache_on(monkeypatch, tmp_path):
    # JAX is imported with the package, before main() runs: the setting must reach jax.config itself.
    from atlas_bayes import cli

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs", "jax_compilation_cache_max_size")
    before = {n: getattr(jax.config, n) for n in names}
    for var in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                "JAX_COMPILATION_CACHE_MAX_SIZE", "ATLAS_COMPILE_CACHE"):
        monkeypatch.delenv(var, raising=False)  # restored after the test, with what main() sets
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        cli._enable_compile_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "atlas" / "xla")
        assert jax.config.jax_compilation_cache_max_size > 0
    finally:
        for n, v in before.items():
            jax.config.update(n, v)
