"""Figure declarations: which figures, from which saved files, and building them.

A paper folder ``papers/<name>/`` holds ``paper.toml``::

    title = "..."
    out = "figures"                    # where the figures go (relative to the paper folder)
    trajectory = "data/run.nc"         # one trajectory file (a glob must match exactly one,
                                       # probe and memory files aside)
    fits = ["../../report/fits"]       # fit files, folders of them, or globs
    sbc = ["../../sbc/overshoot.nc"]   # optional: SBC files for figure kind sbc_ranks

    [[figure]]
    name = "fig1_plants_per_episode"   # file stem of the PNG and PDF
    kind = "trajectories"              # one of FIGURE_KINDS
    behaviour = "event:place_plant"

Paths starting with ``./`` or ``../`` are relative to the paper folder; other relative
paths are tried in the paper folder first, then in the repository (the folder above
``papers/``). Figures are built from these files only: fit files are read with
:func:`valuedyn.fitting.load_fit` and compared with :func:`valuedyn.fitting.compare_fits`
(PSIS-LOO on the stored log likelihood; deterministic), never refitted.

Every figure is rendered in memory before any file is written, so a bad declaration or
a missing input leaves the output folder as it was.
"""

from __future__ import annotations

import dataclasses
import glob
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from valuedyn._errors import ValuedynError
from valuedyn.papers import _figures as F
from valuedyn.papers._style import render_figure, write_rendered

#: What each figure kind accepts in its declaration (besides name and kind).
FIGURE_OPTIONS: dict[str, tuple[str, ...]] = {
    "trajectories": ("behaviour", "models", "max_seeds"),
    "comparison": ("behaviours",),
    "timescales": ("behaviours",),
    "placement_histogram": ("placement", "seeds"),
    "sbc_ranks": ("sbc", "bins"),
    "analysis": ("behaviour", "model"),
    "diversity": ("models", "probe", "found_threshold"),
}
assert set(FIGURE_OPTIONS) == set(F.FIGURE_KINDS)

PAPERS_ROOT = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    name: str
    kind: str
    options: dict

    @staticmethod
    def parse(entry: Mapping, source: str) -> "FigureSpec":
        if not isinstance(entry, Mapping) or "kind" not in entry or "name" not in entry:
            raise ValuedynError(f"{source}: every [[figure]] needs a name and a kind; received {dict(entry)!r}")
        kind, name = str(entry["kind"]), str(entry["name"])
        if kind not in F.FIGURE_KINDS:
            raise ValuedynError(
                f"{source}: figure {name!r} has unknown kind {kind!r}; known kinds: {', '.join(F.FIGURE_KINDS)}"
            )
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValuedynError(f"{source}: figure name {name!r} must be a plain file stem (no slashes)")
        options = {k: v for k, v in entry.items() if k not in ("name", "kind")}
        unknown = sorted(set(options) - set(FIGURE_OPTIONS[kind]))
        if unknown:
            raise ValuedynError(
                f"{source}: figure {name!r} ({kind}) has unknown options {unknown}; it accepts {list(FIGURE_OPTIONS[kind])}"
            )
        for required in {"trajectories": ("behaviour",), "analysis": ("behaviour",), "sbc_ranks": ("sbc",)}.get(kind, ()):
            if required not in options:
                raise ValuedynError(f"{source}: figure {name!r} ({kind}) needs {required} = ...")
        return FigureSpec(name=name, kind=kind, options=options)


# ---------------------------------------------------------------- loaded inputs


class FigureInputs:
    """The saved files a set of figures is built from, loaded once.

    ``fits``: behaviour -> model -> InferenceData (all from the same trajectory);
    comparisons not given are computed on demand with valuedyn.fitting.compare_fits.
    ``winners``: behaviour -> the winner a trust-aware ranking named
    (:func:`valuedyn.fitting.rank`, as ``valuedyn report`` ranks), which :meth:`winner`
    then returns instead of the comparison's first row.
    """

    def __init__(self, trajectory=None, fit_paths: Mapping[str, Mapping[str, Path]] | None = None,
                 fits: Mapping[str, Mapping[str, object]] | None = None, comparisons: Mapping | None = None,
                 base: Path | None = None, winners: Mapping[str, str] | None = None):
        self.trajectory = trajectory
        self.fit_paths = {b: dict(m) for b, m in (fit_paths or {}).items()}
        self.fits = {b: dict(m) for b, m in (fits or {}).items()}
        self._comparisons: dict[str, object] = dict(comparisons or {})
        self.winners = {b: str(m) for b, m in (winners or {}).items() if m}
        self.base = base or Path.cwd()

    @property
    def behaviours(self) -> list[str]:
        return list(self.fits)

    def require_fits(self, behaviour: str) -> dict[str, object]:
        if behaviour not in self.fits:
            known = ", ".join(self.fits) or "none"
            raise ValuedynError(
                f"no fit of behaviour {behaviour!r} among the declared fit files (behaviours found: {known}); "
                "run `valuedyn report` for it or fix the declaration"
            )
        return self.fits[behaviour]

    def comparison(self, behaviour: str):
        """The comparison table of a behaviour, or None with fewer than two models."""
        if behaviour not in self._comparisons:
            fits = self.require_fits(behaviour)
            if len(fits) < 2:
                self._comparisons[behaviour] = None
            else:
                from valuedyn.fitting import compare_fits

                paths = [self.fit_paths[behaviour][m] for m in sorted(fits)]
                self._comparisons[behaviour] = compare_fits(paths, lfo=False, progress=False).table  # no refits
        return self._comparisons[behaviour]

    def winner(self, behaviour: str) -> str:
        """The ranking's winner when one was given (``winners``), else the best model by
        ELPD (the comparison's first row, trustworthy or not), or the only model fitted."""
        fits = self.require_fits(behaviour)
        if self.winners.get(behaviour) in fits:
            return self.winners[behaviour]
        table = self.comparison(behaviour)
        if table is None:
            return next(iter(sorted(fits)))
        return str(table.index[0])


def load_fit_paths(paths: Sequence[Path], trajectory_sha256: str | None = None) -> FigureInputs:
    """Load fit files into a FigureInputs (grouped by behaviour and model).

    With ``trajectory_sha256``, fits of other trajectories are left out; two fits of the
    same behaviour and model are refused (the declaration is ambiguous).
    """
    fits: dict[str, dict[str, object]] = {}
    fit_paths: dict[str, dict[str, Path]] = {}
    for path in paths:
        from valuedyn.fitting import load_fit

        idata = load_fit(path)
        if trajectory_sha256 is not None and str(F.fit_attr(idata, "trajectory_sha256")) != trajectory_sha256:
            continue
        behaviour = str(F.fit_attr(idata, "behaviour"))
        model = str(F.fit_attr(idata, "model"))
        if model in fits.get(behaviour, {}):
            raise ValuedynError(
                f"two fit files of {behaviour} with model {model}: {fit_paths[behaviour][model]} and {path}; "
                "declare only one of them"
            )
        fits.setdefault(behaviour, {})[model] = idata
        fit_paths.setdefault(behaviour, {})[model] = Path(path)
    return FigureInputs(fits=fits, fit_paths=fit_paths)


def _load_netcdf(path: Path, what: str, command: str):
    """A netCDF file written by ``valuedyn COMMAND``, loaded into memory and closed."""
    import xarray as xr

    if not Path(path).is_file():
        raise ValuedynError(f"{what} file {path} does not exist; run `valuedyn {command}` or fix the declaration")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as err:  # h5py raises many types for a corrupt file
        raise ValuedynError(f"cannot read {what} file {path} ({type(err).__name__}); the file is corrupt, re-run `valuedyn {command}`") from None


def load_sbc(path: Path):
    """An SBC file (written by `valuedyn sbc`)."""
    return _load_netcdf(path, "SBC", "sbc")


def load_probe(path: Path):
    """A probe file (written by `valuedyn probe`)."""
    return _load_netcdf(path, "probe", "probe")


# ---------------------------------------------------------------- building


def build_figure(spec: FigureSpec, inputs: FigureInputs):
    """One declared figure as a matplotlib Figure."""
    o = spec.options
    if inputs.trajectory is not None and o.get("behaviour"):
        from valuedyn.fitting import require_part

        try:  # a behaviour whose part the trajectory lacks (an imported log): say which, not "no fit"
            require_part(inputs.trajectory, str(o["behaviour"]))
        except ValuedynError as err:
            raise ValuedynError(f"figure {spec.name!r}: {err}") from None
    if spec.kind == "trajectories":
        fits = inputs.require_fits(o["behaviour"])
        if o.get("models"):
            missing = sorted(set(o["models"]) - set(fits))
            if missing:
                raise ValuedynError(f"figure {spec.name!r}: no fit of {o['behaviour']} with models {missing}; fitted: {sorted(fits)}")
            fits = {m: fits[m] for m in o["models"]}
        return F.plot_behaviour_fits(fits, o["behaviour"], max_seeds=int(o.get("max_seeds", 8)))
    if spec.kind == "comparison":
        behaviours = list(o.get("behaviours") or inputs.behaviours)
        tables = {b: inputs.comparison(b) for b in behaviours}
        return F.plot_model_comparison({b: t for b, t in tables.items() if t is not None})
    if spec.kind == "timescales":
        behaviours = list(o.get("behaviours") or inputs.behaviours)
        return F.plot_timescales({b: inputs.require_fits(b)[inputs.winner(b)] for b in behaviours})
    if spec.kind == "placement_histogram":
        if inputs.trajectory is None:
            raise ValuedynError(f"figure {spec.name!r} needs a trajectory; declare trajectory = \"...\"")
        return F.plot_placement_histogram(inputs.trajectory, str(o.get("placement", "place_plant")), o.get("seeds"))
    if spec.kind == "sbc_ranks":
        return F.plot_sbc_ranks(load_sbc(resolve_path(o["sbc"], inputs.base)), bins=o.get("bins"))
    if spec.kind == "analysis":
        fits = inputs.require_fits(o["behaviour"])
        model = o.get("model") or inputs.winner(o["behaviour"])
        if model not in fits:
            raise ValuedynError(f"figure {spec.name!r}: no fit of {o['behaviour']} with model {model!r}; fitted: {sorted(fits)}")
        return F.plot_model_analysis(fits[model])
    if spec.kind == "diversity":
        from valuedyn.papers._diversity_figures import DIVERSITY_ROWS, plot_diversity

        if inputs.trajectory is None:
            raise ValuedynError(f"figure {spec.name!r} needs a trajectory; declare trajectory = \"...\"")
        fits = {b: inputs.fits[b] for b in DIVERSITY_ROWS if b in inputs.fits}
        if o.get("models") is not None:  # a list of models, or behaviour -> list of models
            chosen = o["models"]
            fits = {b: {m: f for m, f in per_model.items()
                        if m in (chosen.get(b, ()) if isinstance(chosen, Mapping) else chosen)}
                    for b, per_model in fits.items()}
        probe = load_probe(resolve_path(o["probe"], inputs.base)) if o.get("probe") else None
        return plot_diversity(inputs.trajectory, fits, probe, found_threshold=float(o.get("found_threshold", 0.1)))
    raise AssertionError(spec.kind)


def render_figures(specs: Sequence[FigureSpec], inputs: FigureInputs, progress=None) -> dict[str, dict[str, bytes]]:
    """Render every figure in memory (name -> {"png": bytes, "pdf": bytes}); writes nothing."""
    rendered = {}
    iterator = specs if progress is None else progress(specs, desc="figures", unit="fig")
    for spec in iterator:
        rendered[spec.name] = render_figure(build_figure(spec, inputs))
    return rendered


def write_figures(rendered: Mapping[str, Mapping[str, bytes]], out: Path) -> list[Path]:
    written = []
    for name, payload in rendered.items():
        written += write_rendered(dict(payload), Path(out) / name)
    return written


# ---------------------------------------------------------------- paper folders


def repo_root(start: Path) -> Path:
    """The repository holding ``start``: the nearest ancestor with a pyproject.toml."""
    for folder in [start, *start.parents]:
        if (folder / "pyproject.toml").is_file():
            return folder
    return PAPERS_ROOT.parent


def resolve_path(text: str, paper_folder: Path) -> Path:
    """A declared path: ./ and ../ relative to the paper folder, else paper folder then repo."""
    path = Path(text)
    if path.is_absolute():
        return path
    if text.startswith(("./", "../")):
        return (paper_folder / path).resolve()
    local = paper_folder / path
    if local.exists() or glob.glob(str(local)):
        return local.resolve()
    return (repo_root(paper_folder.resolve()) / path).resolve()


def _expand(text: str, paper_folder: Path, *, what: str) -> list[Path]:
    path = resolve_path(text, paper_folder)
    if any(c in str(path) for c in "*?["):
        matches = sorted(Path(p) for p in glob.glob(str(path)))
        if not matches:
            raise ValuedynError(f"{what} {text!r} matches no file (looked for {path}); fix the declaration")
        return matches
    if path.is_dir():
        return sorted(p for p in path.glob("*.nc"))
    if not path.exists():
        raise ValuedynError(f"{what} {text!r} does not exist (looked for {path}); fix the declaration or create it first")
    return [path]


def find_paper_folder(name: str) -> Path:
    """``papers/<name>`` as a path, or a bare name of a folder shipped in valuedyn.papers."""
    known = sorted(p.parent.name for p in PAPERS_ROOT.glob("*/paper.toml"))
    for candidate in (Path(name), PAPERS_ROOT / name):
        if (candidate / "paper.toml").is_file():
            return candidate.resolve()
    raise ValuedynError(
        f"paper folder {name!r} has no paper.toml; known paper folders: {', '.join(known) or 'none'}; "
        "pass papers/<name> or create <name>/paper.toml"
    )


@dataclasses.dataclass(frozen=True)
class Paper:
    folder: Path
    title: str
    out: Path
    trajectory: Path | None
    fit_files: tuple[Path, ...]
    figures: tuple[FigureSpec, ...]


def load_paper(name: str) -> Paper:
    """Parse and check a paper folder's declaration (no figure is built yet)."""
    folder = find_paper_folder(name)
    source = str(folder / "paper.toml")
    try:
        declaration = tomllib.loads((folder / "paper.toml").read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValuedynError(f"{source} is not valid TOML ({err}); fix the declaration") from None
    known_keys = {"title", "out", "trajectory", "fits", "figure"}
    unknown = sorted(set(declaration) - known_keys)
    if unknown:
        raise ValuedynError(f"{source}: unknown keys {unknown}; a paper declares {sorted(known_keys)}")
    figures = tuple(FigureSpec.parse(entry, source) for entry in declaration.get("figure", []))
    if not figures:
        raise ValuedynError(f"{source} declares no [[figure]]; add at least one")
    names = [f.name for f in figures]
    if len(set(names)) != len(names):
        raise ValuedynError(f"{source}: figure names repeat ({names}); each figure needs its own name")
    trajectory = None
    if declaration.get("trajectory"):
        from valuedyn.papers._report_inputs import is_trajectory_name, refuse_non_trajectory

        matches = _expand(str(declaration["trajectory"]), folder, what="trajectory")
        if len(matches) > 1:  # a glob: the probe and memory files beside a run are not trajectories
            matches = [m for m in matches if is_trajectory_name(m)]
        for match in matches:
            refuse_non_trajectory(match)
        if len(matches) != 1:
            raise ValuedynError(
                f"{source}: trajectory {declaration['trajectory']!r} matches {len(matches)} files "
                f"({', '.join(map(str, matches))}); name exactly one"
            )
        trajectory = matches[0]
    fits_declared = declaration.get("fits", [])
    if isinstance(fits_declared, str):
        fits_declared = [fits_declared]
    fit_files: list[Path] = []
    for entry in fits_declared:
        fit_files += _expand(str(entry), folder, what="fits")
    needs_fits = any(f.kind not in ("placement_histogram", "sbc_ranks") for f in figures)
    if needs_fits and not fit_files:
        raise ValuedynError(
            f"{source}: its figures need fit files but fits = {fits_declared!r} holds none; "
            "run `valuedyn report --out DIR` and declare fits = [\"DIR/fits\"]"
        )
    return Paper(
        folder=folder,
        title=str(declaration.get("title", folder.name)),
        out=(folder / str(declaration.get("out", "figures"))).resolve(),  # outputs live with the paper
        trajectory=trajectory,
        fit_files=tuple(fit_files),
        figures=figures,
    )


def build_paper(paper: Paper, out: Path | None = None, progress=None) -> list[Path]:
    """Load the declared files, render every figure, then write them all; returns the paths."""
    from valuedyn._io import file_sha256
    from valuedyn.data import open_trajectory

    trajectory = open_trajectory(paper.trajectory) if paper.trajectory is not None else None
    sha = file_sha256(paper.trajectory) if paper.trajectory is not None else None
    inputs = load_fit_paths(paper.fit_files, trajectory_sha256=sha)
    if paper.fit_files and not inputs.fits:
        raise ValuedynError(
            f"none of the {len(paper.fit_files)} declared fit files was made from {paper.trajectory} "
            "(their trajectory_sha256 differs); re-run `valuedyn report` on it"
        )
    inputs.trajectory = trajectory
    inputs.base = paper.folder
    rendered = render_figures(paper.figures, inputs, progress=progress)
    return write_figures(rendered, out or paper.out)
