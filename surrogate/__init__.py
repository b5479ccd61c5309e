"""surrogate: an emulator of the loss per evaluation language, with uncertainty, and planning with it.

Train with :func:`emulate` (a Gaussian process per evaluation language, optionally around a fitted
law's posterior), query with :meth:`Surrogate.predict` (the same prediction schema as
``atlas_bayes.predict``), save and :func:`load` it, choose a run for a budget with :func:`plan`, and
pick the next runs to train with :func:`suggest`.
"""

from surrogate.emulator import (
    EXTRAPOLATION_LIMIT,
    EXTRAPOLATION_WARN,
    ExtrapolationWarning,
    Surrogate,
    emulate,
    from_fit,
)
from surrogate.files import is_surrogate_file, load, save
from surrogate.planning import Plan, plan
from surrogate.suggesting import Suggestions, suggest
from surrogate.synthetic import held_out_mixture, multilingual_cube

__all__ = [
    "Surrogate",
    "emulate",
    "from_fit",
    "save",
    "load",
    "is_surrogate_file",
    "ExtrapolationWarning",
    "EXTRAPOLATION_WARN",
    "EXTRAPOLATION_LIMIT",
    "Plan",
    "plan",
    "Suggestions",
    "suggest",
    "multilingual_cube",
    "held_out_mixture",
]
