"""Analyses: the project's questions asked of fits.

Conditions of training compared in one hierarchical fit (``_conditions``), the diversity
timescales (``_diversity``) and the motif headline, rise then decay (``_headline``).

Imports ``judge``, ``inference`` and :mod:`valuedyn.fitting.settings`, never ``pipeline``.
"""
