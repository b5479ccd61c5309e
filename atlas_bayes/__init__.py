"""atlas_bayes: multilingual scaling laws (ATLAS and baselines) with honest uncertainty.

Layers: :mod:`~atlas_bayes.laws` (pure ``jax.numpy`` formulas) -> :mod:`~atlas_bayes.registry`
(laws' parameters and the bridge from run cubes to arrays) -> fits (:mod:`~atlas_bayes.point`,
Bayesian inference) and queries over :mod:`~atlas_bayes.cube` run cubes.
"""

from atlas_bayes import cube, laws, registry, tabular
from atlas_bayes.cube import CubeError, load, save
from atlas_bayes.fitting import fit
from atlas_bayes.registry import LAWS, get_law
from atlas_bayes.results import FitResult, load_fit, summary
from atlas_bayes.tabular import from_table, import_table, to_table

__all__ = [
    "cube",
    "laws",
    "registry",
    "tabular",
    "CubeError",
    "load",
    "save",
    "fit",
    "LAWS",
    "get_law",
    "FitResult",
    "load_fit",
    "summary",
    "from_table",
    "import_table",
    "to_table",
]

__version__ = "0.1.0"
