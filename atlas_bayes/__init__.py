"""atlas_bayes: multilingual scaling laws (ATLAS and baselines) with honest uncertainty.

Layers: :mod:`~atlas_bayes.laws` (pure ``jax.numpy`` formulas) -> :mod:`~atlas_bayes.registry`
(laws' parameters and the bridge from run cubes to arrays) -> fits (:mod:`~atlas_bayes.point`,
Bayesian inference) and queries over :mod:`~atlas_bayes.cube` run cubes.
"""

import warnings as _warnings

# ArviZ 0.23 announces its 1.0 refactor with a FutureWarning on every import; it is not about this
# package's use of ArviZ and users can do nothing about it, so that one message is silenced.
_warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

from atlas_bayes import (  # noqa: E402
    compare,
    crossover,
    cube,
    curse,
    inference,
    laws,
    optimal,
    plots,
    point,
    predict,
    registry,
    simulate,
    tabular,
    transfer,
    transfer_model,
)
from atlas_bayes.cube import CubeError, load, save  # noqa: E402
from atlas_bayes.fitting import fit  # noqa: E402
from atlas_bayes.inference import fit_bayes  # noqa: E402
from atlas_bayes.registry import LAWS, get_law  # noqa: E402
from atlas_bayes.results import FitResult, load_fit, summary  # noqa: E402
from atlas_bayes.tabular import from_table, import_table, to_table  # noqa: E402

__all__ = [
    "compare",
    "crossover",
    "cube",
    "curse",
    "inference",
    "laws",
    "optimal",
    "plots",
    "point",
    "predict",
    "registry",
    "simulate",
    "tabular",
    "transfer",
    "transfer_model",
    "fit_bayes",
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
