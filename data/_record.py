"""The trajectory file a training run writes (contract: valuedyn.data._schema).

The whole (small) file is rewritten atomically after every chunk, so a kill at any
moment leaves a valid file holding every completed chunk.
"""

from __future__ import annotations

import numpy as np

from valuedyn.data._schema import COUNT_VARIABLES, METRIC_TRAILING_DIMS


def build_trajectory(metrics: dict[str, np.ndarray], names: dict, steps_per_update: int, placement_bins: int, attrs: dict):
    """An xarray Dataset from ``metrics[name] [seed, update, ...]`` (updates 1..n)."""
    import xarray as xr

    num_seeds, num_updates = metrics["episodes_finished"].shape[:2]
    update = np.arange(1, num_updates + 1, dtype=np.int64)
    data_vars = {}
    for name, trailing in METRIC_TRAILING_DIMS.items():
        values = np.asarray(metrics[name])
        values = values.astype(np.int32 if name in COUNT_VARIABLES else np.float32, copy=False)
        data_vars[name] = (("seed", "update") + trailing, values)
    coords = {
        "seed": np.arange(num_seeds, dtype=np.int64),
        "update": update,
        "env_step": ("update", update * steps_per_update),
        "achievement": list(names["achievement"]),
        "event": list(names["event"]),
        "action": list(names["action"]),
        "placement": list(names["placement"]),
        "count_bin": np.arange(placement_bins, dtype=np.int64),
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs))
    ds["placement_histogram"].attrs["description"] = (
        f"finished episodes by how often they did each placement event; the last bin ({placement_bins - 1}) "
        f"counts episodes with >= {placement_bins - 1}"
    )
    ds["return_sum"].attrs["description"] = "sum of the training reward (the configured reward) over finished episodes"
    ds["action_count"].attrs["description"] = (
        "actions chosen by the policy over all env steps of the update (Craftax runs NOOP instead while the player sleeps)"
    )
    ds["env_step"].attrs["description"] = "env steps per seed completed at the end of the update"
    return ds


def concat_metrics(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate metric dicts along the update axis (axis 1)."""
    return {name: np.concatenate([p[name] for p in parts], axis=1) for name in METRIC_TRAILING_DIMS}


def metrics_from_dataset(ds, num_updates: int) -> dict[str, np.ndarray]:
    """The first ``num_updates`` updates of a trajectory file's metrics, as numpy."""
    return {name: np.asarray(ds[name].values[:, :num_updates]) for name in METRIC_TRAILING_DIMS}
