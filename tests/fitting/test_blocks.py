"""Blocks of updates (``--blocks``): widths that grow from 1 update, totals conserved, masks
respected, each block's likelihood over its true span, and a fit in blocks that agrees with
the unaggregated fit of the same simulated run."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.data import open_trajectory
from valuedyn.fitting.inference._select import aggregate_blocks, block_starts, select_behaviour, update_edges
from valuedyn.fitting.inference._simulate import simulate_trajectory, write_trajectory
from valuedyn.fitting.settings import BLOCKS_AUTO_CAP, FitConfig, blocks_cap
from valuedyn.models import get_model

N_UPDATES = 150
N_BLOCKS = 24
# the same for both seeds: complete pooling (what the fits below use) is then well specified
TRUTH = {"t0": np.array([0.12, 0.12]), "k": np.array([30.0, 30.0]), "floor": np.array([0.05, 0.05]),
         "ceiling": np.array([0.7, 0.7])}


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    dataset = simulate_trajectory(get_model("logistic_onset"), TRUTH, behaviour="unlock:place_table",
                                  n_updates=N_UPDATES, episodes_per_update=30.0, masked_updates=3,
                                  observation="binomial", seed=5)
    path = tmp_path_factory.mktemp("blocks") / "long.nc"
    write_trajectory(dataset, path)
    return path


@pytest.mark.parametrize("n_updates, cap", [(726, 64), (150, 24), (65, 64), (10000, 64), (3, 2)])
def test_widths_start_at_one_update_grow_and_fill_the_run(n_updates, cap):
    starts = block_starts(n_updates, cap)
    widths = np.diff(starts)
    assert starts[0] == 0 and starts[-1] == n_updates and len(widths) == cap
    assert widths[0] == 1 and widths.min() >= 1 and np.all(np.diff(widths) >= 0)
    if n_updates >= 4 * cap:
        assert widths[-1] > 4 * widths[0]  # geometric: the late blocks are many updates wide


def test_blocks_option_is_parsed_once():
    assert blocks_cap("auto") == BLOCKS_AUTO_CAP and blocks_cap("none") is None and blocks_cap("12") == 12
    for bad in ("1", "many", "-3"):
        with pytest.raises(ValuedynError, match="--blocks must be auto, none or an integer >= 2"):
            blocks_cap(bad)
    assert FitConfig(trajectory="t.nc", model="logistic_onset", behaviour="unlock:x", out="o.nc").blocks == "auto"


def test_aggregation_conserves_totals_respects_masks_and_records_edges(long_run):
    dataset = open_trajectory(long_run)
    selection = select_behaviour(dataset, "unlock:place_table")
    selection = selection.with_mask(selection.mask & ~((selection.updates >= 40) & (selection.updates < 43))[None, :])
    assert aggregate_blocks(selection, "none") is selection
    assert aggregate_blocks(selection, str(N_UPDATES)) is selection  # no more updates than the cap: unchanged
    assert aggregate_blocks(selection, "auto") is not selection  # 150 > 64 updates
    blocks = aggregate_blocks(selection, N_BLOCKS)
    assert blocks.y.shape == (2, N_BLOCKS) and blocks.aggregated and blocks.widths.sum() == N_UPDATES
    # totals conserved over the observed cells
    assert blocks.y.sum() == selection.y[selection.mask].sum()
    assert blocks.exposure.sum() == pytest.approx(selection.exposure[selection.mask].sum())
    owner = np.repeat(np.arange(N_BLOCKS), blocks.widths)
    for b in range(N_BLOCKS):
        cells = owner == b
        np.testing.assert_array_equal(blocks.mask[:, b], selection.mask[:, cells].any(axis=1))
        np.testing.assert_array_equal(blocks.y[:, b], np.where(selection.mask[:, cells], selection.y[:, cells], 0).sum(1))
    assert not blocks.mask[:, 0].any()  # the first 3 updates finish no episode, and the first blocks are 1 update wide
    # edges: the union of the updates' own spans; the block's tau is inside it
    spans = update_edges(selection.tau)
    np.testing.assert_allclose(blocks.edges, spans[np.concatenate([[0], np.cumsum(blocks.widths)])])
    assert np.all((blocks.tau > blocks.edges[:-1]) & (blocks.tau < blocks.edges[1:]))
    assert blocks.level_scale == selection.level_scale and blocks.updates[0] == selection.updates[0]
    record = json.loads(blocks.selection_json())
    assert record["n_updates"] == N_UPDATES and record["blocks"]["n_blocks"] == N_BLOCKS
    assert record["blocks"]["widths"] == [int(w) for w in blocks.widths] and len(record["blocks"]["edges_tau"]) == N_BLOCKS + 1
    assert blocks.blocks_text == (f"{N_UPDATES} updates aggregated into {N_BLOCKS} blocks, 1 to {int(blocks.widths.max())} "
                                  f"updates wide (--blocks {N_BLOCKS}: at most {N_BLOCKS})")


def test_a_diversity_block_is_the_mean_of_its_observed_updates(long_run):
    selection = select_behaviour(open_trajectory(long_run), "diversity:actions")
    blocks = aggregate_blocks(selection, N_BLOCKS)
    last = slice(N_UPDATES - int(blocks.widths[-1]), N_UPDATES)
    np.testing.assert_allclose(blocks.y[:, -1], selection.y[:, last].mean(axis=1))
    assert np.all(blocks.exposure[blocks.mask] == 1.0)


def test_the_likelihood_integrates_the_level_over_each_block_span():
    model = get_model("overshoot")
    params = {**model.typical_params(), "t0": 0.2137}
    tau = np.linspace(0.0, 1.0, 31)
    unit, _ = model.solve_binned(params, jnp.asarray(tau, jnp.float32))
    spans, _ = model.solve_binned(params, jnp.asarray(tau, jnp.float32), edges=jnp.asarray(update_edges(tau), jnp.float32),
                                  nodes=2)  # edges given, the quadrature of unaggregated spans
    # the same spans (edges rounded to float32 once more: the same numbers to an ulp)
    np.testing.assert_allclose(np.asarray(unit["level"]), np.asarray(spans["level"]), rtol=1e-6)
    # blocks of updates 6..8 (the change point and the fast rise inside) and 9..29 (the decay):
    # the level's mean over the block's span (BLOCK_NODES per piece; 2 nodes were 1 % off here)
    edges = update_edges(tau)[[6, 9, 30]]
    blocks, _ = model.solve_binned(params, jnp.asarray([tau[6:9].mean(), tau[9:30].mean()], jnp.float32),
                                   edges=jnp.asarray(edges, jnp.float32))
    for index in range(2):
        fine = jnp.linspace(edges[index], edges[index + 1], 20001)
        reference = float(jnp.mean(model.solve(params, fine)[0]["level"]))
        assert float(blocks["level"][index]) == pytest.approx(reference, abs=1e-3)


@pytest.fixture(scope="module")
def fits(long_run, tmp_path_factory):
    from valuedyn.fitting import fit_trajectory

    folder = tmp_path_factory.mktemp("block_fits")
    out = {}
    for blocks in ("none", str(N_BLOCKS)):
        out[blocks] = fit_trajectory(FitConfig(
            trajectory=str(long_run), model="logistic_onset", behaviour="unlock:place_table", out=str(folder / f"{blocks}.nc"),
            blocks=blocks, chains=2, warmup=300, draws=300, min_draws=0, pooling="complete", observation="binomial",
            progress=False))
    return out


def test_a_fit_in_blocks_agrees_with_the_unaggregated_fit(fits):
    from valuedyn.fitting import load_fit

    full, blocked = load_fit(fits["none"]), load_fit(fits[str(N_BLOCKS)])
    assert full.posterior.sizes["update"] == N_UPDATES and blocked.posterior.sizes["update"] == N_BLOCKS
    assert "blocks" not in json.loads(full.attrs["selection"])
    stored = json.loads(blocked.attrs["selection"])["blocks"]
    assert stored["n_blocks"] == N_BLOCKS and stored["choice"] == str(N_BLOCKS) and sum(stored["widths"]) == N_UPDATES
    np.testing.assert_array_equal(np.asarray(blocked.observed_data["y"].values).sum(),
                                  np.asarray(full.observed_data["y"].values).sum())
    for name in ("t0", "k", "ceiling"):
        a = np.asarray(full.posterior[name].values)[..., 0].ravel()
        b = np.asarray(blocked.posterior[name].values)[..., 0].ravel()
        assert abs(a.mean() - b.mean()) < max(a.std(), b.std()), (name, a.mean(), a.std(), b.mean(), b.std())
        lo_a, hi_a = np.quantile(a, [0.05, 0.95])
        lo_b, hi_b = np.quantile(b, [0.05, 0.95])
        assert lo_a < hi_b and lo_b < hi_a  # the 90 % intervals overlap
        slack = 0.5 * (hi_b - lo_b)
        assert lo_b - slack < TRUTH[name][0] < hi_b + slack  # and the blocks' fit recovers the truth


def test_leave_future_out_refits_on_the_fit_s_own_blocks(fits):
    """The refit has the fit's likelihood: the held-out cells are the blocks past the cut, not
    the updates (the refit of the campaign's 400-update overshoot fit once ran on the 400
    unaggregated updates, 12 minutes, and scored 400 cells where the fit has 64 blocks a seed)."""
    from valuedyn.fitting import load_fit
    from valuedyn.fitting.judge._compare import leave_future_out

    blocked = load_fit(fits[str(N_BLOCKS)])
    edges = np.asarray(json.loads(blocked.attrs["selection"])["blocks"]["widths"])
    tau = np.asarray(blocked.constant_data["tau"].values)
    mask = np.asarray(blocked.constant_data["mask"].transpose("seed", "update").values, bool)
    expected = int((mask & (tau[None, :] > 0.75)).sum())
    assert 0 < expected < N_BLOCKS * mask.shape[0] and len(edges) == N_BLOCKS
    score = leave_future_out(blocked, 0.75, progress=False)
    assert score["lfo_n"] == expected == len(score["lfo_pointwise"])
