"""Sweeps end to end: the cube, skipping, recreating a run alone, resuming, bad input, the CLI."""

import json
import math

import numpy as np
import pytest

from atlas_bayes import cube as cube_lib
from atlas_bayes.cli import main
from trainer import runner
from trainer import sweep as sweep_lib
from trainer.corpus import open_source


def test_cube_contents(tiny_result):
    cube = tiny_result.cube
    cube_lib.validate(cube)
    assert cube["loss"].attrs["units"] == "bits/byte" and "step" in cube["loss"].dims
    assert list(cube["lang"].values) == ["ama", "ami", "bel"] and list(cube["src"].values) == ["ama", "ami", "bel"]
    assert cube.sizes["run"] == 2 * 2 + 2 + 1  # mono x 2 languages x 2 budgets, bilingual x 2 budgets (U = 1000), finetune
    fin = cube_lib.final(cube)
    assert np.all(np.isfinite(fin["loss"])) and np.all(fin["loss"] < 8.5)  # bits/byte, below the uniform 8
    # learning curves: increasing D, several evaluations per run
    for r in cube["run"].values:
        d = cube["D"].sel(run=r).values
        d = d[np.isfinite(d)]
        assert len(d) >= 4 and np.all(np.diff(d) > 0)
    n, n_ne = cube["N"].values, cube["N_nonembed"].values
    assert np.all(n == 7696) and np.all(n_ne == 7696 - (258 + 16) * 16)


def test_epochs_kind_base_and_metadata(tiny_result):
    cube = tiny_result.cube
    bi = cube.sel(run=[r for r in cube["run"].values if r.startswith("bi.") and r.endswith("D2.56k")][0])
    assert float(bi["U"].sel(src="ama")) == 1000 and math.isinf(float(bi["U"].sel(src="bel")))
    # 2560 tokens, half each: 1280 / 1000 epochs of ama and ami
    assert float(bi["epochs"].sel(src="ama")) == pytest.approx(1280 / 1000)
    assert float(bi["epochs"].sel(src="bel")) == 0
    ft = cube.sel(run=[r for r in cube["run"].values if r.startswith("ft.")][0])
    assert str(ft["kind"].values) == "finetune" and str(ft["base"].values) == str(bi["run"].values)
    assert float(ft["D_base"]) == 2560 and float(cube_lib.final(ft)["D"]) == 640
    assert set(cube["kind"].values) == {"pretrain", "finetune"}
    meta = cube.attrs["language_metadata"]
    assert meta["ama"]["script"] == "Latn" and meta["bel"]["family"] == "boreal"
    rel = cube.attrs["relatedness"]
    assert rel["langs"] == ["ama", "ami", "bel"] and rel["tree_distance"][0][1] == 1.0
    assert cube.attrs["sweep"]["name"] == "tiny" and cube.attrs["sweep"]["train"]["batch_size"] == 8
    # survives the file round trip
    back = cube_lib.load(tiny_result.path)
    assert back.attrs["language_metadata"] == meta and back["config"].sizes == {"run": 7}


def test_finished_runs_are_skipped(tiny_result, tmp_path_factory):
    again = sweep_lib.run_sweep(tiny_result.cube.attrs["sweep"]["path"], out=tiny_result.path, progress=False,
                                compile_cache=False)
    assert again.trained == [] and len(again.skipped) == 7
    np.testing.assert_array_equal(again.cube["loss"].values, tiny_result.cube["loss"].values)


@pytest.mark.parametrize("prefix", ["mono.t1.mono:ama", "bi.t1.bi:ama+ami"])
def test_a_run_recreated_alone_is_identical(tiny_result, tmp_path, prefix):
    # The small budget was a branch off the shared trunk; trained alone it must give the same curve,
    # with fresh data (mono) and with a U budget larger than the small run reads (bi: U = 1000).
    run_id = [r for r in tiny_result.cube["run"].values if r.startswith(prefix) and r.endswith("D1.28k")][0]
    alone = sweep_lib.run_sweep(tiny_result.cube.attrs["sweep"]["path"], out=tmp_path / "one.nc", progress=False,
                                only=[run_id], compile_cache=False)
    assert alone.trained == [run_id] and list(alone.cube["run"].values) == [run_id]
    a, b = alone.cube["loss"].sel(run=run_id), tiny_result.cube["loss"].sel(run=run_id)
    np.testing.assert_array_equal(a.values[np.isfinite(a.values)], b.values[np.isfinite(b.values)])


def test_interrupted_job_resumes_from_its_checkpoint(tiny_result, tmp_path):
    sweep = sweep_lib.load_sweep(tiny_result.cube.attrs["sweep"]["path"])
    source = open_source(sweep.data)
    job = [j for j in sweep_lib.plan(sweep, source, tmp_path) if j.mixture == "mono:ama"][0]
    taken = []

    def crash(n):
        taken.append(n)
        if sum(taken) >= 14:  # past the first budget (10 steps) and the checkpoint at step 10
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_job(job, source, runs_dir=tmp_path, sources=list(source.langs), progress=crash)
    small, big = sorted(job.runs, key=lambda r: r.steps)
    assert runner.run_done(tmp_path, job, small) and not runner.run_done(tmp_path, job, big)
    assert (tmp_path / "checkpoints" / f"{job.job_hash}.npz").exists()
    resumed = []
    assert runner.run_job(job, source, runs_dir=tmp_path, sources=list(source.langs), progress=resumed.append) == [big.run_id]
    assert sum(resumed) == big.steps - 10  # continued from the step-10 checkpoint
    assert not (tmp_path / "checkpoints" / f"{job.job_hash}.npz").exists()
    got = cube_lib.read_netcdf(runner.run_path(tmp_path, big.run_id))["loss"].values
    want = tiny_result.cube["loss"].sel(run=[big.run_id]).values
    np.testing.assert_array_equal(got[np.isfinite(got)], want[np.isfinite(want)])  # bit-identical to uninterrupted


@pytest.mark.parametrize(
    "body, match",
    [
        ('[[group]]\nname = "g"\nscales = ["t1"]\ntokens = [1280]\nmixtures = [{ monolingual = "ama" }]\nlr = 1\n',
         r"unknown key 'lr' in \[\[group\]\] #1; allowed: name, kind, scales"),
        ('[scales.bad]\nwidth = 30\ndepth = 1\nheads = 4\n[[group]]\nname = "g"\nscales = ["bad"]\ntokens = [1280]\n'
         'mixtures = [{ monolingual = "ama" }]\n', r"\[scales\.bad\]: heads=4 does not divide width=30"),
        ('[[group]]\nname = "g"\nscales = ["t1"]\ntokens = [1280]\nmixtures = [{ monolingual = "zz" }]\n',
         r"mixtures\[0\]: unknown language 'zz'; the data has ama, ami, bel"),
        ('[[group]]\nname = "g"\nscales = ["t1"]\ntokens = [300]\nmixtures = [{ monolingual = "ama" }]\n',
         r"token budget D=300 is 2 steps of 128 tokens; its decay would start at step 2, before warmup ends at step 4"),
        ('[[group]]\nname = "g"\nscales = ["t9"]\ntokens = [1280]\nmixtures = [{ monolingual = "ama" }]\n',
         r"unknown scale 't9'; known: s01"),
        ('[[group]]\nname = "f"\nkind = "finetune"\nbase = { group = "nope" }\ntokens = [1280]\n'
         'mixtures = [{ monolingual = "ama" }]\n', r"group 'nope' is not a pretrain group of this sweep"),
    ],
)
def test_bad_sweeps_fail_before_training(tmp_path, write_sweep, body, match):
    path = write_sweep(tmp_path, body)
    with pytest.raises(ValueError, match=match):
        sweep_lib.run_sweep(path, out=tmp_path / "c.nc", progress=False, compile_cache=False)
    assert not (tmp_path / "c_runs").exists() or not any((tmp_path / "c_runs").glob("*.nc"))


def test_bad_corpora_fail_before_training(tmp_path, write_sweep, tiny_head):
    head = tiny_head.replace('world = "default"\nlangs = ["ama", "ami", "bel"]', 'corpus = "texts"')
    body = '[[group]]\nname = "g"\nscales = ["t1"]\ntokens = [1280]\nmixtures = [{ monolingual = "de" }]\n'
    (tmp_path / "texts").mkdir()
    path = write_sweep(tmp_path, body, head=head)
    with pytest.raises(ValueError, match=r"empty corpus: no text found under"):
        sweep_lib.run_sweep(path, out=tmp_path / "c.nc", progress=False, compile_cache=False)
    (tmp_path / "texts" / "de.txt").write_text("nur ein Dokument")
    with pytest.raises(ValueError, match=r"language 'de' has no training text"):
        sweep_lib.run_sweep(path, out=tmp_path / "c.nc", progress=False, compile_cache=False)
    assert not any(tmp_path.glob("c_runs/*.nc"))


def test_cli_train_json_and_errors(tiny_result, tmp_path, capsys, write_sweep):
    path = tiny_result.cube.attrs["sweep"]["path"]
    assert main(["train", path, "--out", str(tiny_result.path), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["runs"] == 7 and line["trained"] == 0 and line["skipped"] == 7
    assert main(["train", path, "--out", str(tmp_path / "x.nc"), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out.strip())
    assert len(plan["runs"]) == 7 and plan["steps"] < sum(r["steps"] for r in plan["runs"])  # branching saves steps
    bad = write_sweep(tmp_path, '[[group]]\nname = "g"\n', name="bad.toml")
    assert main(["train", str(bad), "--out", str(tmp_path / "y.nc")]) == 2
    assert "atlas: error: [[group]] 'g' needs scales" in capsys.readouterr().err
    assert main(["train", "no-such-sweep", "--out", str(tmp_path / "y.nc")]) == 2
    assert "shipped sweeps are" in capsys.readouterr().err


def test_shipped_sweeps_are_valid(tmp_path):
    assert {"demo", "tiny"} <= set(sweep_lib.shipped_sweeps())
    demo = sweep_lib.load_sweep("demo")
    jobs = sweep_lib.plan(demo, open_source(demo.data), tmp_path)
    kinds = {j.group: j for j in jobs}
    assert {"mono", "bi", "curse", "repeat", "ft"} <= set(kinds) and kinds["ft"].kind == "finetune"
    assert any(math.isfinite(u) for j in jobs for _, u in j.unique)  # repeated data
    assert sum(j.total_steps for j in jobs) < 0.6 * sum(r.steps for j in jobs for r in j.runs)  # branching


def test_world_cli(capsys):
    assert main(["world", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["languages"]) == 10 and out["relatedness"]["tree_distance"][0][0] == 0


@pytest.mark.slow
def test_process_pool(tmp_path, write_sweep, tiny_head):
    # One device per worker (data_parallel = "off") keeps each spawned worker's compile small.
    head = tiny_head.replace("[train]\n", '[train]\ndata_parallel = "off"\n')
    body = ('[[group]]\nname = "m"\nscales = ["t1"]\ntokens = [1280]\nmixtures = [{ monolingual = ["ama", "ami"] }]\n'
            '[[group]]\nname = "f"\nkind = "finetune"\nbase = { group = "m", mixture = "mono:ama" }\ntokens = [640]\n'
            'mixtures = [{ monolingual = "bel" }]\n')
    path = write_sweep(tmp_path, body, head=head)
    result = sweep_lib.run_sweep(path, out=tmp_path / "c.nc", workers=2, progress=False, compile_cache=True)
    assert sorted(result.trained) == sorted(result.cube["run"].values) and result.cube.sizes["run"] == 3
    assert str(result.cube["kind"].sel(run=[r for r in result.trained if r.startswith("f.")][0]).values) == "finetune"
