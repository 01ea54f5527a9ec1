"""valuedyn: how an RL agent's values and behaviours develop over training.

Rooms (one import namespace, folders at the top of the repository):

- ``valuedyn.data``     Craftax PPO trainer and the trajectory file contract
- ``valuedyn.models``   stylized dynamical models (sympy definition -> JAX solution)
- ``valuedyn.fitting``  numpyro inference, diagnostics, checks, comparison, SBC
- ``valuedyn.papers``   figures and reports built only from saved files
"""

from valuedyn._errors import ValuedynError

__version__ = "0.1.0"

__all__ = ["ValuedynError", "__version__"]
