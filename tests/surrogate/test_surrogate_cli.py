"""The surrogate's verbs as a user meets them: emulate, predict (on a surrogate), plan, suggest; --json; errors."""

import json

import jax
import pytest

import surrogate
from atlas_bayes import cube as cube_lib
from atlas_bayes.cli import main


def test_emulate_json_and_table(tmp_path, capsys):
    tiny = surrogate.multilingual_cube(key=jax.random.key(1), langs=("en", "fr"), sizes=(1e7, 1e8), budgets=(1e9, 1e10), n_random=1)
    cube_path = str(cube_lib.save(tiny, tmp_path / "tiny.nc"))
    out = tmp_path / "s.nc"
    assert main(["emulate", cube_path, "--out", str(out), "--steps", "30", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["out"] == str(out) and out.exists() and info["emulator"] == "gp" and info["langs"] == ["en", "fr"]
    assert info["runs"] == 16 and set(info["diagnostics"]["fr"]) >= {"n_obs", "loo_rmse_log", "loo_coverage90", "sigma"}
    assert main(["emulate", cube_path, "--out", str(tmp_path / "t.nc"), "--steps", "30"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("trained gp on 16 runs: 2 evaluation language(s)") and "LOO 90% coverage" in text


def test_predict_plan_suggest_on_a_saved_surrogate(model_path, tmp_path, capsys):
    assert main(["predict", model_path, "--N", "3e7", "--D", "2e9,4e9", "--mix", "en=0.3,fr=0.4,sw=0.3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and {r["lang"] for r in rows} == {"en", "fr", "sw"}
    assert set(rows[0]) == {"N", "D", "lang", "mean", "median", "lower", "upper", "law_mean", "law_lower", "law_upper", "sd", "mix"}
    assert rows[0]["mix"] == {"en": 0.3, "fr": 0.4, "sw": 0.3} and rows[0]["lower"] < rows[0]["mean"] < rows[0]["upper"]
    grid = tmp_path / "configs.csv"
    grid.write_text("N,D,lang,mix:en,mix:fr\n3e7,2e9,fr,0.5,0.5\n5e7,4e9,en,1,0\n")
    assert main(["predict", model_path, "--grid", str(grid), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["lang"], r["N"]) for r in rows] == [("fr", 3e7), ("en", 5e7)]
    assert main(["predict", model_path, "--N", "3e7", "--D", "2e9", "--target", "fr"]) == 0  # the target alone
    assert "fr=1" in capsys.readouterr().out

    assert main(["plan", model_path, "--compute", "5.4e17", "--targets", "en,fr", "--languages", "en,fr", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert abs(6 * plan["N"] * plan["D"] / 5.4e17 - 1) < 1e-9 and set(plan["loss"]) == {"en", "fr"}
    assert main(["plan", model_path, "--compute", "5.4e17", "--targets", "en,fr", "--languages", "en,fr"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("plan for C = 5.4e+17 FLOPs, minimising the expected loss averaged over en, fr") and "mixture:" in text

    assert main(["suggest", model_path, "--n", "2", "--compute", "5.4e17", "--targets", "en,fr", "--languages", "en,fr",
                 "--candidates", "32", "--json"]) == 0
    sug = json.loads(capsys.readouterr().out)
    assert sug["decision"] == "optimum" and len(sug["runs"]) == 2 and sug["current_sd"] > 0
    assert main(["suggest", model_path, "--n", "2", "--compute", "5.4e17", "--targets", "en,fr", "--languages", "en,fr",
                 "--candidates", "32"]) == 0
    assert "variance reduction" in capsys.readouterr().out
    # no budget or targets: the largest training run's compute (1e8 x 1e10 x 6) and every language, said so
    assert main(["suggest", model_path, "--n", "1", "--candidates", "16"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("default targets: every evaluation language (en,fr,sw; set --targets)\n"
                           "default budget: the largest training run's compute, C = 6e+18 FLOPs (set --compute)\n")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "{model}", "--N", "3e7", "--D", "2e9", "--mix", "en=0.5,de=0.5"],
         "atlas: error: mix names 'de', which the emulator never saw in training"),
        (["predict", "{model}", "--N", "3e10", "--D", "2e9", "--mix", "en=1"],
         "atlas: error: N=3e+10, D=2e+09 lies 300x outside the trained range"),
        (["plan", "{model}", "--compute", "1e30", "--targets", "fr"],
         "atlas: error: compute 1e+30 FLOPs is outside what the emulator can plan for"),
        (["suggest", "{model}", "--decision", "crossover", "--targets", "fr", "--N", "3e7"],
         "atlas: error: decision 'crossover' needs both pretrain and finetune runs"),
        (["suggest", "{model}", "--compute", "5.4e17", "--targets", "fr", "--prior", "fit.nc"],
         "atlas: error: --prior applies when SOURCE is a run cube"),
    ],
)
def test_errors_are_one_line(model_path, argv, message, capsys):
    assert main([a.replace("{model}", model_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "csv, message",
    [
        ("N,D,lang,mix:en,mix:fr\n3e7,2e9,de,0.5,0.5\n", "atlas: error: unknown evaluation language 'de'; the emulator predicts"),
        ("N,D,lang,mix:en,mix:de\n3e7,2e9,en,0.5,0.5\n", "atlas: error: mix names 'de', which the emulator never saw in training"),
        ("N,D,lang,mix:en,mix:fr\n3e7,2e9,en,0.5,0.6\n", "atlas: error: --grid mix columns: mixture weights must sum to 1"),
        ("N,D\n3e7,2e9\n", "atlas: error: give the mixture (mix): the emulator was trained on 3 languages"),
    ],
)
def test_bad_grid_files(model_path, tmp_path, csv, message, capsys):
    grid = tmp_path / "configs.csv"
    grid.write_text(csv)
    assert main(["predict", model_path, "--grid", str(grid)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
