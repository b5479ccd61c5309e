"""Each package's ``__all__`` is its public API: pinned here so changes are deliberate."""

import importlib

import pytest

PUBLIC = {
    "atlas_bayes": {
        "compare", "crossover", "cube", "curse", "inference", "laws", "optimal", "plots", "point", "predict",
        "registry", "simulate", "tabular", "transfer", "transfer_model", "fit_bayes", "CubeError", "load", "save", "fit", "LAWS", "get_law",
        "FitResult", "load_fit", "summary", "from_table", "import_table", "to_table",
    },
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned(package):
    module = importlib.import_module(package)
    assert set(module.__all__) == PUBLIC[package]
    for name in module.__all__:
        assert hasattr(module, name), name
