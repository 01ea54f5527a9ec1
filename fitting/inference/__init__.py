"""Inference: from a trajectory's numbers to posterior draws in a fit file.

Selection of a behaviour (``_select``), observation models (``_observation``), the numpyro
model and its parameter spaces (``_model``), the compiled MAP + NUTS sampler (``_nuts``)
and the convergence gate it stops on (``_diagnostics``), one fit end to end (``_fit``),
the one reader and writer of fit files (``_store``) and simulated trajectories for
recovery and calibration (``_simulate``).

The lowest sub-room: it imports only :mod:`valuedyn.fitting.settings` of the fitting room,
never ``judge``, ``analyses`` or ``pipeline``.
"""
