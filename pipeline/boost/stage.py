"""The boost experiment as a stage: one reconstructor, the same seed and steps, trained on real
data alone and with each arm's synthetic data, scored on every test set, reported.

Layout of ``out``: ``arms/<arm>/seed-<s>/train/`` (``recon_train``) and ``.../eval-<test>/``
(``recon_eval``) beside it, ``boost_report.json``, ``boost_report.md`` and ``pck.png``. Each
training and evaluation is a stage of its own, reused when finished, so the boost flow can
run the arms as parallel tasks into the same layout and then call this stage for the report.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.boost.arms import ARM_NAMES, arm_jobs, arm_run
from pipeline.config import PipelineConfig, with_overrides
from pipeline.data.manifest import dataset_name
from pipeline.errors import ConfigError
from pipeline.stage import StageInputs, StageSummary, input_path, stage
from pipeline.storage import Location


class ExperimentInputs(StageInputs):
    real: str = input_path("the real training dataset of the protocol")
    tests: list[str] = input_path("the protocol's test datasets")
    synthetic: list[str] = input_path("each arm's synthetic dataset, in config boost.arms order ('' for real only)")
    synthesizer_train: str | None = input_path("what the synthesizer trained on (checked by the guard)", None)
    filter_train: str | None = input_path("what the filter's reconstructor trained on (checked by the guard)", None)
    protocol: str = Field("main", description="the protocol's name")
    note: str = Field("", description="a line the report prints (what its numbers are: a smoke test, a benchmark...)")


class ExperimentSummary(StageSummary):
    protocol: str
    arms: list[str]
    dropped: list[str]
    tests: list[str]
    table: dict
    files: dict[str, str]


INFORMATIVE_RATIO = 0.6  # real only must score at most this fraction of the constant predictor's RR J-PE


@stage("experiment", ExperimentInputs, ExperimentSummary, ("reconstruction", "boost.seeds", "boost.arm_seeds",
                                                           "boost.synthetic_count", "boost.arms", "hand.model"))
def experiment(config: PipelineConfig, inputs: ExperimentInputs, out: Location) -> ExperimentSummary:
    """Train and score every arm of one protocol (reusing what is finished), then write the report.

    The guard runs first: a test sharing a sequence with anything the protocol learned from is
    refused before any training."""
    from pipeline.boost.guard import check_protocol
    from pipeline.boost.references import reference_errors
    from pipeline.boost.report import collect, markdown, pck_png
    from pipeline.reconstruction.stage import EvalInputs, TrainInputs, recon_eval, recon_train

    if len(inputs.synthetic) != len(config.boost.arms):
        raise ConfigError(f"synthetic: {len(inputs.synthetic)} datasets for {len(config.boost.arms)} arms "
                          f"({', '.join(config.boost.arms)})")
    synthetic = dict(zip(config.boost.arms, inputs.synthetic))
    guard = check_protocol(inputs.protocol, inputs.tests, {
        "train": [inputs.real], "synthesizer_train": [inputs.synthesizer_train],
        "filter_train": [inputs.filter_train], "synthetic": [data for data in synthetic.values() if data]})
    root = Path(out.path)
    jobs = arm_jobs(config.boost, inputs.real, inputs.tests, synthetic, root)
    trained = {}
    for job in jobs:
        arm_config = with_overrides(config, job.overrides, source="boost experiment")
        trained[job.label] = recon_train(arm_config, TrainInputs(**job.train), job.train_folder)
        for eval_inputs, folder in job.evals:
            recon_eval(arm_config, EvalInputs(**eval_inputs), folder)
    guard["arms_trained_on_the_protocol_split"] = _trained_on(trained, inputs.real)
    tests = {dataset_name(t): t for t in inputs.tests}
    folders = {arm: {seed: arm_run(root, arm, seed) for seed in config.boost.seeds_of(arm)} for arm in synthetic}
    table = collect(folders, tests)
    references = {name: {ref: {k: v for k, v in errors.items() if not k.endswith("per_sample")}
                         for ref, errors in reference_errors(inputs.real, where,
                                                             config.reconstruction.procrustes).items()}
                  for name, where in tests.items()}
    informative = {name: _informative(table, references, name) for name in tests}
    rows = {job.arm: (trained[job.label].datasets.get("synthetic") or {}).get("rows", 0) for job in jobs}
    dropped = [arm for arm in ARM_NAMES if arm not in synthetic]
    protocol = {"name": inputs.protocol, "train": inputs.real, "synthesizer_train": inputs.synthesizer_train,
                "filter_train": inputs.filter_train, "tests": inputs.tests, "guard": guard}
    out.write_json("boost_report.json", {"protocol": protocol, "arms": list(table), "table": table,
                                         "tests": list(tests), "dropped": dropped, "references": references,
                                         "informative": informative, "synthetic_rows": rows, "note": inputs.note,
                                         "model": config.reconstruction.model, "seeds": config.boost.seeds,
                                         "synthetic_count": config.boost.synthetic_count})
    out.write_atomic("boost_report.md", markdown(table, list(tests), dropped, inputs.note, references,
                                                 {arm: rows[arm] for arm in table}, informative).encode())
    out.write_atomic("pck.png", pck_png(folders, list(tests)))
    return ExperimentSummary(protocol=inputs.protocol, arms=list(synthetic), dropped=dropped, tests=list(tests),
                             table=table, files={name: out.address(name) for name in ("boost_report.json",
                                                                                      "boost_report.md", "pck.png")})


def _trained_on(trained: dict, real: str) -> bool:
    """Every arm's reconstructor trained on the protocol's own real split (its summary's record)."""
    from pipeline.data.manifest import dataset_fingerprint

    wanted = dataset_fingerprint(real)
    found = {label: (summary.datasets.get("real") or {}).get("fingerprint") for label, summary in trained.items()}
    wrong = sorted(label for label, fingerprint in found.items() if fingerprint != wanted)
    if wrong:
        raise ConfigError(f"the reconstructors {', '.join(wrong)} were not trained on the protocol's training split "
                          f"{real}; remove their folders and run again", real)
    return True


def _informative(table: dict, references: dict, test: str) -> dict | None:
    """Whether real only learned from the images: its RR J-PE against the constant predictor's."""
    if "real_only" not in table:
        return None
    ratio = table["real_only"][test]["rr_mm"] / references[test]["constant"]["rr_mm"]
    return {"real_only_over_constant": round(ratio, 3), "at_most": INFORMATIVE_RATIO,
            "informative": ratio <= INFORMATIVE_RATIO}
