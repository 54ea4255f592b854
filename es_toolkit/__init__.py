"""es_toolkit: evolution strategies in JAX.

Smooth any function, differentiable or not, into f_sigma(x) = E_z f(x + sigma z), with
values and derivatives of any order estimated from function values only.
"""

from es_toolkit import noise
from es_toolkit.ask_tell import Optimizer
from es_toolkit.noise import Gumbel, Normal
from es_toolkit.optimize import OptimizeResult, OptimizeState, maximize, minimize
from es_toolkit.perturb import make_perturbed_fun, make_perturbed_value_and_grad
from es_toolkit.restarts import Restarts

__all__ = [
    "Gumbel",
    "Normal",
    "OptimizeResult",
    "OptimizeState",
    "Optimizer",
    "Restarts",
    "make_perturbed_fun",
    "make_perturbed_value_and_grad",
    "maximize",
    "minimize",
    "noise",
]
__version__ = "0.1.0"
