"""Pipeline: many fits at once, and the command-line front ends.

A plan of fits (``_plan``), their cache keys and file names (``_cache``), the batch runner
on a process pool or a Dask cluster (``_batch``), the JAX set-up of a fitting process
(``_jax_setup``), and the commands ``valuedyn fit`` / ``check`` / ``compare`` / ``sbc``
(``_cli``), ``fit-batch`` (``_batch_cli``) and ``conditions`` (``_conditions_cli``).

The top sub-room: it may import every other one; no library module imports a
command-line module (``*_cli``). The commands' configs are declared in
:mod:`valuedyn.fitting.settings`.
"""
