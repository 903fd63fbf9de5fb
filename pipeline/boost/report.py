"""The boost experiment's report: a Table-5-style table, each arm's change against real only
with its 95% interval, reference rows that train nothing, and the PCK curves of every arm."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from pipeline.boost.arms import ARMS
from pipeline.boost.intervals import MIN_SEEDS, relative_change_interval, significant
from pipeline.imaging import figure_png, pyplot

VIEWS = {"rr": ("joints", "root_relative"), "pa": ("joints", "procrustes")}
REFERENCE_LABELS = {"constant": "reference: constant (mean training pose, no image)",
                    "nearest_pose": "reference: nearest training pose (oracle retrieval)"}


def per_sample_errors(run: Path, test: str) -> dict[str, tuple[float, float]]:
    """``sample_id -> (RR, PA)`` joint errors in mm of one evaluation (its ``per_sample.csv``)."""
    with open(run / f"eval-{test}" / "per_sample.csv", newline="") as handle:
        return {row["sample_id"]: (float(row["joints_root_relative_mm"]), float(row["joints_procrustes_mm"]))
                for row in csv.DictReader(handle)}


def test_sequences(where) -> tuple[list[str], np.ndarray]:
    """A test set's sample ids and each one's sequence (rows without one are their own sequence)."""
    from pipeline.data.manifest import read_columns

    _, table = read_columns(where, ["sample_id", "sequence_id"])
    ids = [str(s) for s in table.column("sample_id").to_pylist()]
    sequences = [s or i for s, i in zip(table.column("sequence_id").to_pylist(), ids)]
    return ids, np.asarray(sequences, dtype=object)


def collect(arm_folders: dict[str, dict[int, Path]], tests: dict[str, str]) -> dict:
    """``arm -> test -> {rr_mm, rr_std, pa_mm, pa_std, rr_auc, pa_auc, seeds, rr_change_pct,
    rr_change_ci95, pa_change_pct, pa_change_ci95, significant}`` over the seeds' evaluations;
    ``tests`` maps a test's name to its dataset (for the bootstrap's sequences)."""
    table: dict = {arm: {} for arm in arm_folders}
    for test, where in tests.items():
        ids, sequences = test_sequences(where)
        errors = {}  # arm -> view -> seed -> per-sample errors in the test set's row order
        seed_means = {}  # arm -> view -> seed -> mean error (mm)
        for arm, runs in arm_folders.items():
            metrics = {seed: json.loads((run / f"eval-{test}" / "metrics.json").read_text())
                       for seed, run in runs.items()}
            entry = {"seeds": len(metrics)}
            seed_means[arm] = {short: {seed: m[part][view]["mean_mm"] for seed, m in metrics.items()}
                               for short, (part, view) in VIEWS.items()}
            for short, (part, view) in VIEWS.items():
                means = np.array(list(seed_means[arm][short].values()))
                aucs = np.array([m[part][view]["auc"] for m in metrics.values()])
                entry.update({f"{short}_mm": float(means.mean()), f"{short}_std": float(means.std()),
                              f"{short}_auc": float(aucs.mean())})
            samples = {seed: per_sample_errors(run, test) for seed, run in runs.items()}
            errors[arm] = {short: {seed: np.array([rows[i][column] for i in ids]) for seed, rows in samples.items()}
                           for column, short in enumerate(VIEWS)}
            table[arm][test] = entry
        for arm in table:
            entry, base = table[arm][test], table.get("real_only", {}).get(test)
            for short in VIEWS:
                entry[f"{short}_change_pct"] = None if base is None else \
                    paired_change(seed_means[arm][short], seed_means["real_only"][short])
                entry[f"{short}_change_ci95"] = None if base is None or arm == "real_only" else \
                    relative_change_interval(errors[arm][short], errors["real_only"][short], sequences)
            entry["significant"] = significant(entry["rr_change_ci95"], entry["seeds"])
    return table


def paired_change(arm: dict[int, float], base: dict[int, float]) -> float | None:
    """The arm's mean error against real only's on the same seeds, in percent: an arm trained on
    fewer seeds is compared with real only on those."""
    seeds = sorted(set(arm) & set(base))
    if not seeds:
        return None
    ours, theirs = np.mean([arm[s] for s in seeds]), np.mean([base[s] for s in seeds])
    return round(100.0 * (ours - theirs) / theirs, 2)


def markdown(table: dict, tests: list[str], dropped: list[str], note: str, references: dict | None = None,
             rows: dict | None = None, informative: dict | None = None) -> str:
    """The protocol's table: errors, each arm's change against real only with its 95% interval
    (* where the interval excludes 0 over two seeds or more), the synthetic rows each arm trained
    on, the reference rows, and whether real only learned from the images (what the arms'
    differences are worth)."""
    header = "| arm | " + " | ".join(f"{t} RR J-PE mm | RR vs real [95% CI] | {t} PA J-PE mm | PA vs real [95% CI]"
                                     for t in tests) + " | synthetic rows |"
    lines = [header, "|---|" + "---:|---:|---:|---:|" * len(tests) + "---:|"]

    def spread(entry: dict, short: str) -> str:  # one seed has no spread to show
        mean, std = entry[f"{short}_mm"], entry[f"{short}_std"]
        return f"{mean:.2f} ± {std:.2f}" if entry["seeds"] >= MIN_SEEDS else f"{mean:.2f}"

    def change(entry: dict, short: str) -> str:
        interval = entry.get(f"{short}_change_ci95")
        if entry.get(f"{short}_change_pct") is None or interval is None:
            return ""
        mark = "*" if significant(interval, entry["seeds"]) else ""
        return f"{entry[f'{short}_change_pct']:+.1f}%{mark} [{interval[0]:+.1f}, {interval[1]:+.1f}]"

    for arm, per_test in table.items():
        cells = []
        for test in tests:
            e = per_test[test]
            cells += [spread(e, "rr"), change(e, "rr"), spread(e, "pa"), change(e, "pa")]
        lines.append(f"| {ARMS[arm].label} | " + " | ".join(cells) + f" | {(rows or {}).get(arm, '')} |")
    for name, label in REFERENCE_LABELS.items():
        if references and all(name in references.get(test, {}) for test in tests):
            cells = []
            for test in tests:
                entry = references[test][name]
                cells += [f"{entry['rr_mm']:.2f}", "", f"{entry['pa_mm']:.2f}", ""]
            lines.append(f"| {label} | " + " | ".join(cells) + " | |")
    seeds = max(e["seeds"] for per_test in table.values() for e in per_test.values())
    fewer = "".join(f"; {ARMS[arm].label}: {per_test[tests[0]]['seeds']}, against real only on the same seeds"
                    for arm, per_test in table.items() if per_test[tests[0]]["seeds"] < seeds)
    over = f"Mean ± spread (std) over {seeds} seeds" if seeds >= MIN_SEEDS else "One seed, so no spread"
    lines += ["", f"{over}{fewer}; RR: root-relative, PA: Procrustes-aligned "
              "(align_w_scale); 'vs real': change of the error against real only (negative is better), with its "
              "95% interval from a bootstrap over seeds (paired) and test sequences; * the interval excludes 0 "
              f"and pairs at least {MIN_SEEDS} seeds (one seed's interval leaves out the training's own noise). "
              "The reference rows train nothing and see no image."]
    for test, verdict in (informative or {}).items():
        if verdict:
            ratio, bar = verdict["real_only_over_constant"], verdict["at_most"]
            lines.append(f"Real only on {test}: {ratio:.2f}x the constant predictor's RR J-PE; " + (
                f"at most {bar}x, so it learned from the images and the arms' differences measure the data."
                if verdict["informative"] else
                f"above {bar}x, so it learned little from the images: the arms' differences say little "
                "(a smoke test of the mechanics, not a measurement)."))
    if note:
        lines.append(note)
    if dropped:
        lines.append(f"Arms not run: {', '.join(dropped)}.")
    return "\n".join(lines) + "\n"


def pck_png(arm_folders: dict[str, dict[int, Path]], tests: list[str]) -> bytes:
    fig, axes = pyplot().subplots(1, len(tests), figsize=(6.5 * len(tests), 4.5), squeeze=False)
    for axis, test in zip(axes[0], tests):
        for arm, runs in arm_folders.items():
            curves = [json.loads((run / f"eval-{test}" / "pck.json").read_text())["joints_root_relative"]
                      for run in runs.values()]
            axis.plot(curves[0]["thresholds_mm"], np.mean([c["pck"] for c in curves], axis=0),
                      label=ARMS[arm].label)
        axis.set(title=f"{test}: root-relative joints", xlabel="threshold (mm)", ylabel="PCK", ylim=(0, 1.02))
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return figure_png(fig)
