"""Every script in examples/ runs with its tiny settings and writes what its docstring promises.

Each example runs as a user would run it: a subprocess of this interpreter, ``--tiny --out DIR``.
The runs take 20 s to a minute each on 2 cores (sampling and training at toy size), hence slow.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> (extra flags, files it must write into --out)
CASES = {
    "quickstart": ((), ("runs.nc", "fit.nc", "params.csv", "prediction.csv", "check.png")),
    "paper_scale": ((), ("cube.nc", "fit_zh.nc", "params.csv", "heldout.csv", "optimal.csv", "heldout.png")),
    "transfer_matrix": ((), ("transfer_cube.nc", "bts.csv", "bts_heatmap.png", "predicted_pairs.csv",
                             "transfer_matrix_filled.png", "transfer_matrix.nc")),
    "curse_of_multilinguality": ((), ("iso_loss.png", "iso_loss.csv", "scaling.csv", "curse_fit.nc")),
    "curse_of_multilinguality:train": (("--data", "train"), ("curse_cube.nc", "iso_loss.png", "curse_fit.nc")),
    "pretrain_vs_finetune": ((), ("crossover.png", "crossover.csv")),
    "plan_with_surrogate": ((), ("heldout.png", "heldout.csv", "surrogate.nc")),
}
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("*.py"))


def test_every_example_is_tested_and_documented():
    assert sorted({c.split(":")[0] for c in CASES}) == SCRIPTS
    for name in SCRIPTS:
        source = (EXAMPLES / f"{name}.py").read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        for section in ("What it shows", "How to run", "What to expect"):
            assert section in doc, f"{name}.py: docstring lacks a {section!r} section"
        for flag in ('"--tiny"', '"--out"'):
            assert flag in source, f"{name}.py has no {flag} flag"


def run_example(case: str, out: Path) -> subprocess.CompletedProcess:
    name = case.split(":")[0]
    flags, _ = CASES[case]
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--tiny", "--out", str(out), *flags],
                          capture_output=True, text=True, env=env, timeout=900, cwd=out.parent)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_example_runs_tiny(case, tmp_path):
    out = tmp_path / "out"
    res = run_example(case, out)
    assert res.returncode == 0, f"{case} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert f"to {out}" in res.stdout  # the closing line says where the files are
    for name in CASES[case][1]:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, f"{case} did not write {name}"
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
