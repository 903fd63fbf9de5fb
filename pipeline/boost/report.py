"""The boost experiment's report: a Table-5-style table, each arm's change against real only,
and the PCK curves of every arm in one plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.boost.arms import ARMS
from pipeline.imaging import figure_png, pyplot

VIEWS = {"rr": ("joints", "root_relative"), "pa": ("joints", "procrustes")}


def collect(arm_folders: dict[str, list[Path]], tests: list[str]) -> dict:
    """``arm -> test -> {rr_mm, rr_std, pa_mm, pa_std, rr_auc, pa_auc, seeds}`` over the seeds' evals."""
    table = {}
    for arm, runs in arm_folders.items():
        table[arm] = {}
        for test in tests:
            metrics = [json.loads((run / f"eval-{test}" / "metrics.json").read_text()) for run in runs]
            entry = {"seeds": len(metrics)}
            for short, (part, view) in VIEWS.items():
                means = np.array([m[part][view]["mean_mm"] for m in metrics])
                aucs = np.array([m[part][view]["auc"] for m in metrics])
                entry.update({f"{short}_mm": float(means.mean()), f"{short}_std": float(means.std()),
                              f"{short}_auc": float(aucs.mean())})
            table[arm][test] = entry
    for arm in table:
        for test, entry in table[arm].items():
            base = table.get("real_only", {}).get(test)
            for short in VIEWS:
                entry[f"{short}_change_pct"] = None if base is None else \
                    round(100.0 * (entry[f"{short}_mm"] - base[f"{short}_mm"]) / base[f"{short}_mm"], 2)
    return table


def markdown(table: dict, tests: list[str], dropped: list[str], note: str) -> str:
    header = "| arm | " + " | ".join(f"{t} RR J-PE mm | vs real | {t} PA J-PE mm" for t in tests) + " |"
    lines = [header, "|---|" + "---:|---:|---:|" * len(tests)]
    for arm, per_test in table.items():
        cells = []
        for test in tests:
            e = per_test[test]
            change = "" if e["rr_change_pct"] is None or arm == "real_only" else f"{e['rr_change_pct']:+.1f}%"
            cells += [f"{e['rr_mm']:.2f} ± {e['rr_std']:.2f}", change, f"{e['pa_mm']:.2f} ± {e['pa_std']:.2f}"]
        lines.append(f"| {ARMS[arm].label} | " + " | ".join(cells) + " |")
    seeds = max(e["seeds"] for per_test in table.values() for e in per_test.values())
    lines += ["", f"Mean ± spread (std) over {seeds} seed(s); RR: root-relative, PA: Procrustes-aligned "
              "(align_w_scale); 'vs real': change of the RR error against real only (negative is better).", note]
    if dropped:
        lines.append(f"Arms not run: {', '.join(dropped)}.")
    return "\n".join(lines) + "\n"


def pck_png(arm_folders: dict[str, list[Path]], tests: list[str]) -> bytes:
    fig, axes = pyplot().subplots(1, len(tests), figsize=(6.5 * len(tests), 4.5), squeeze=False)
    for axis, test in zip(axes[0], tests):
        for arm, runs in arm_folders.items():
            curves = [json.loads((run / f"eval-{test}" / "pck.json").read_text())["joints_root_relative"]
                      for run in runs]
            axis.plot(curves[0]["thresholds_mm"], np.mean([c["pck"] for c in curves], axis=0),
                      label=ARMS[arm].label)
        axis.set(title=f"{test}: root-relative joints", xlabel="threshold (mm)", ylabel="PCK", ylim=(0, 1.02))
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return figure_png(fig)
