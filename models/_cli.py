"""`valuedyn models`: list the registered models, or show one's equations and analysis."""

from __future__ import annotations

from dataclasses import dataclass

from valuedyn._config import option


@dataclass(frozen=True)
class ModelsConfig:
    """List the registered dynamical models with their parameters, or, given NAME, print
    that model's equations, parameters, observables and analysis (fixed points, Jacobian
    eigenvalues, stability, timescales; numbers at the prior means)."""

    name: str | None = option(None, "a registered model name; omit to list all", positional=True, metavar="NAME")


def _describe_parameters(model) -> list[str]:
    lines = []
    for p in model.parameters:
        support = f"[{p.lower:g}, {p.upper:g}]"
        lines.append(f"    {p.name:<10} {p.unit:<6} {support:<12} prior {_prior_text(p.prior)}  {p.doc}")
    return lines


def _prior_text(prior) -> str:
    transforms = getattr(prior, "transforms", None)
    if transforms:  # e.g. unit_interval_prior: sigmoid(Normal(loc, scale))
        inner = _prior_text(prior.base_dist)
        for transform in transforms:
            inner = f"{type(transform).__name__.replace('Transform', '').lower()}({inner})"
        return inner
    name = type(prior).__name__
    fields = [f"{k}={float(getattr(prior, k)):.3g}" for k in getattr(prior, "arg_constraints", {}) if hasattr(prior, k)]
    return f"{name}({', '.join(fields)})"


def run_models(config: ModelsConfig) -> int:
    from valuedyn.models import get_model, list_models

    if config.name is None:
        print("registered models (time in tau = fitting window mapped to [0, 1]; levels in normalised units):")
        for name in list_models():
            model = get_model(name)
            first = " ".join(model.summary.split("\n\n")[0].split())  # the idea, first paragraph
            print(f"\n{name}  ({'closed form' if model.closed_form else 'ODE solve'}): {first}")
            print("  parameters: " + ", ".join(f"{p.name} [{p.unit}]" for p in model.parameters))
            print("  observables: " + ", ".join(o.name for o in model.observables)
                  + "; applies to: " + ", ".join(f"{k} via {v}" for k, v in model.applies_to.items()))
        return 0
    model = get_model(config.name)
    print(f"{model.name}\n")
    print(model.summary)
    ode = (f"ODE solve: RK4 on a fixed grid of {model.ode_steps} steps per phase, checked against diffrax's adaptive "
           "solve in every fit (ode_error)" if model.ode_method == "grid" else "ODE solve: diffrax, adaptive")
    print(f"\nsolution: {'closed form (checked against diffrax in the tests)' if model.closed_form else ode}")
    print("state: " + ", ".join(model.state_names))
    print("parameters (name, unit, support, default prior, meaning):")
    print("\n".join(_describe_parameters(model)))
    print("observables: " + "; ".join(f"{o.name} ({o.kind}): {o.doc}" for o in model.observables))
    print("applies to: " + ", ".join(f"{k} via {v}" for k, v in model.applies_to.items()))
    print()
    print("numbers below at the prior means (medians for sigmoid-normal priors)")
    print(model.analysis(model.typical_params()).format())
    return 0
