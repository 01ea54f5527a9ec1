"""Judging fits: is a fit to be believed, and which model predicts best?

Posterior predictive checks (``_check``), separate modes (``_modes``), the verdict of a fit
and the trust-aware ranking (``_trust``), model comparison by PSIS-LOO and leave-future-out
(``_compare``), the choice of an observation model from two fits (``_overdispersion``) and
simulation-based calibration of the sampler (``_sbc``).

Imports ``inference`` and :mod:`valuedyn.fitting.settings`, never ``analyses`` or ``pipeline``.
"""
