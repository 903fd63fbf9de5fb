"""The boost experiment as a stage: one reconstructor, the same seed and steps, trained on real
data alone and with each arm's synthetic data, scored on every test set, reported.

Layout of ``out``: ``arms/<arm>/seed-<s>/train/`` (``recon_train``) and ``.../eval-<test>/``
(``recon_eval``) beside it, ``boost_report.json``, ``boost_report.md`` and ``pck.png``. Each
training and evaluation is a stage of its own, reused when finished, so the boost flow can
run the arms as parallel tasks into the same layout and then call this stage for the report.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.boost.arms import ARM_NAMES, arm_jobs, arm_run
from pipeline.config import PipelineConfig, with_overrides
from pipeline.data.manifest import dataset_name
from pipeline.errors import ConfigError
from pipeline.stage import StageInputs, StageSummary, input_path, stage
from pipeline.storage import Location


class ExperimentInputs(StageInputs):
    real: str = input_path("the real training dataset")
    tests: list[str] = input_path("test datasets")
    synthetic: list[str] = input_path("each arm's synthetic dataset, in config boost.arms order ('' for real only)")
    note: str = ""  # a line the report prints (what its numbers are: a smoke test, a benchmark...)


class ExperimentSummary(StageSummary):
    arms: list[str]
    dropped: list[str]
    tests: list[str]
    table: dict
    files: dict[str, str]


@stage("experiment", ExperimentInputs, ExperimentSummary, ("reconstruction", "boost.seeds", "boost.synthetic_count",
                                                           "boost.arms", "hand.model"))
def experiment(config: PipelineConfig, inputs: ExperimentInputs, out: Location) -> ExperimentSummary:
    """Train and score every arm (reusing what is finished), then write the report."""
    from pipeline.boost.report import collect, markdown, pck_png
    from pipeline.reconstruction.stage import EvalInputs, TrainInputs, recon_eval, recon_train

    if len(inputs.synthetic) != len(config.boost.arms):
        raise ConfigError(f"synthetic: {len(inputs.synthetic)} datasets for {len(config.boost.arms)} arms "
                          f"({', '.join(config.boost.arms)})")
    synthetic = dict(zip(config.boost.arms, inputs.synthetic))
    root = Path(out.path)
    for job in arm_jobs(config.boost.seeds, config.boost.synthetic_count, inputs.real, inputs.tests, synthetic, root):
        arm_config = with_overrides(config, job.overrides, source="boost experiment")
        recon_train(arm_config, TrainInputs(**job.train), job.train_folder)
        for eval_inputs, folder in job.evals:
            recon_eval(arm_config, EvalInputs(**eval_inputs), folder)
    tests = [dataset_name(t) for t in inputs.tests]
    folders = {arm: [arm_run(root, arm, seed) for seed in config.boost.seeds] for arm in synthetic}
    table = collect(folders, tests)
    dropped = [arm for arm in ARM_NAMES if arm not in synthetic]
    out.write_json("boost_report.json", {"arms": list(table), "table": table, "tests": tests, "dropped": dropped,
                                         "note": inputs.note, "model": config.reconstruction.model,
                                         "seeds": config.boost.seeds,
                                         "synthetic_count": config.boost.synthetic_count})
    out.write_atomic("boost_report.md", markdown(table, tests, dropped, inputs.note).encode())
    out.write_atomic("pck.png", pck_png(folders, tests))
    return ExperimentSummary(arms=list(synthetic), dropped=dropped, tests=tests, table=table,
                             files={name: out.join(name) for name in ("boost_report.json", "boost_report.md",
                                                                       "pck.png")})
