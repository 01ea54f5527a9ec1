"""The summary a reader takes in at one glance, and each verdict's evidence written once.

Reads the papers tests' shared tiny report (conftest.py's ``tiny_report``: real NUTS,
built once per session), so no report runs here.
"""

from __future__ import annotations

import json

from valuedyn.papers._report_markdown import SUMMARY_MAX_LINES


def _report(tiny_report):
    out, _ = tiny_report
    return (out / "report.md").read_text(), json.loads((out / "report.json").read_text())


def _summary(markdown: str) -> list[str]:
    """The summary block: its heading and the bullets that follow it."""
    lines = [line for line in markdown.splitlines() if line.strip()]
    start = lines.index("## Summary")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("- "))
    return lines[start:end]


def test_the_summary_is_at_the_top_and_fits_in_fifteen_lines(tiny_report):
    markdown, report = _report(tiny_report)
    lines = [line for line in markdown.splitlines() if line.strip()]
    assert lines[:2] == ["# valuedyn report", "## Summary"]  # before anything else
    summary = _summary(markdown)
    assert len(summary) <= SUMMARY_MAX_LINES == 15
    text = "\n".join(summary)
    # the motif per trajectory, the winner (or undecided) per behaviour, what is not decided
    for name, short in report["motif_summary"].items():
        assert f"({name}): {short}." in text
        why = report["motif_undecided"][name]  # the reason the summary lists, from report.json, never parsed
        assert (why is None) == short.startswith(("rises, then decays", "rises, no decay")) or "fit is" in short
        if why:
            assert f"the motif of {name} ({why})" in summary[-1]
    (winners,) = [line for line in summary if line.startswith("- Winners")]
    for result in report["results"]:
        said = "undecided" if result["winner"] is None else result["winner"]
        assert f"{result['behaviour']}: " in winners and said in winners
    assert summary[-1].startswith("- Not decided: ")
    # one trajectory, one condition: no effect of a condition is claimed
    assert report["conditions"]["n_conditions"] == 1 and "Effect of the condition" not in text


def _evidence(report: dict) -> list[str]:
    """Every sentence that carries a verdict's evidence: each cause of every fit (clause by
    clause), the rankings, the motif paragraphs and the diversity answers."""
    sentences = []
    for result in report["results"]:
        sentences.append(result.get("text") or "")
        for fit in result["fits"].values():
            for cause in (fit["verdict"] or {}).get("causes", []):
                sentences += cause["summary"].split("; ")
    sentences += list(report["motif"].values())
    sentences += [view["text"] for view in report["diversity"]]
    return [s for s in sentences if len(s) >= 20]


def test_each_verdicts_evidence_is_written_once(tiny_report):
    markdown, report = _report(tiny_report)
    evidence = _evidence(report)
    assert evidence  # the tiny fits are judged: there is evidence to place
    repeated = {s: markdown.count(s) for s in evidence if markdown.count(s) > 1}
    assert not repeated
    # and an untrustworthy fit's causes are written, once, under "Untrustworthy fits"
    after = markdown.split("## Untrustworthy fits", 1)[1]
    for result in report["results"]:
        for fit in result["fits"].values():
            for cause in (fit["verdict"] or {}).get("causes", []):
                assert markdown.count(cause["summary"]) == 1 and cause["summary"] in after


def test_a_refitted_fit_shows_its_first_attempt_in_one_line(tiny_report):
    markdown, report = _report(tiny_report)
    refitted = [(model, fit["first_attempt"]) for result in report["results"]
                for model, fit in result["fits"].items() if fit["first_attempt"]]
    assert refitted  # 2 chains x 40 draws cannot pass the gate: the report refits with the remedy
    for model, first in refitted:
        (line,) = [line for line in markdown.splitlines() if line.startswith(f"- refit: {model}: ")]
        assert first["failure"] in line and first["remedy"]["text"] in line
        assert first["refit"] in ("done", "cached") and "refitted once with" in line


def test_an_answer_from_an_untrustworthy_fit_or_a_lone_trustworthy_fit_is_not_called_decided():
    from pathlib import Path
    from types import SimpleNamespace

    from valuedyn.papers._report_markdown import summary_lines

    name = "run.nc"
    section = SimpleNamespace(trajectory=Path(name), behaviour="event:place_plant",
                              fitted=["logistic_onset", "overshoot", "stagewise"],
                              verdict={"winner": "logistic_onset", "clearly": None, "text": "only trustworthy fit"})
    report = {"trajectories": [{"path": name}], "conditions": {"n_conditions": 1},
              "motif_summary": {name: "rises, then decays (P(decay) 1.00); its overshoot fit is not identified"},
              "motif_undecided": {name: "its overshoot fit is not identified"}}
    (decided,) = [line for line in summary_lines([section], report, {}) if line.startswith("- Not decided")]
    assert "the motif of run.nc (its overshoot fit is not identified)" in decided
    assert "the comparison on event:place_plant (only logistic_onset of 3 fits is trustworthy)" in decided
    # a trustworthy motif fit and a clear winner: nothing left undecided
    report["motif_summary"][name] = "rises, then decays (P(decay) 1.00)"
    report["motif_undecided"][name] = None
    section.verdict = {"winner": "overshoot", "clearly": True}
    (decided,) = [line for line in summary_lines([section], report, {}) if line.startswith("- Not decided")]
    assert decided.startswith("- Not decided: nothing")
