"""Shared tiny configurations for the trainer tests.

Every test that trains uses one model shape (width 16, 1 layer, seq_len 16, batch 8) so the whole
directory compiles the train step once per device count; runs take a fraction of a second each.
"""

import textwrap
from pathlib import Path

import pytest

from trainer import sweep as sweep_lib

TINY = """
name = "tiny"
[data]
world = "default"
langs = ["ama", "ami", "bel"]
seq_len = 16
test_tokens = 256
[train]
batch_size = 8
warmup_steps = 4
eval_points = 4
checkpoint_every = 10
[scales.t1]
width = 16
depth = 1
heads = 2
"""

GROUPS = """
[[group]]
name = "mono"
scales = ["t1"]
tokens = [1280, 2560]
mixtures = [{ monolingual = ["ama", "bel"] }]
[[group]]
name = "bi"
scales = ["t1"]
tokens = [1280, 2560]
mixtures = [{ bilingual = ["ama", "ami"] }]
unique = [1000]
[[group]]
name = "ft"
kind = "finetune"
base = { group = "bi", tokens = 2560 }
tokens = [640]
mixtures = [{ monolingual = "bel" }]
"""


def write_sweep(tmp_path: Path, body: str = GROUPS, head: str = TINY, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return path


@pytest.fixture(name="write_sweep")
def write_sweep_fixture():
    """``write_sweep(tmp_path, body, head=TINY, name=...)``: a sweep file of the tiny configuration."""
    return write_sweep


@pytest.fixture
def tiny_head():
    return TINY


@pytest.fixture(scope="session")
def tiny_result(tmp_path_factory):
    """One finished tiny sweep (mono, bilingual with repeated data, finetune), shared by read-only tests."""
    tmp = tmp_path_factory.mktemp("tiny")
    path = write_sweep(tmp)
    return sweep_lib.run_sweep(path, out=tmp / "cube.nc", progress=False, compile_cache=False)
