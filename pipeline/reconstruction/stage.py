"""The reconstruction stages: train a reconstructor, evaluate it, score any model's predictions.

``recon_train`` trains ``reconstruction.model`` on a real dataset (plus, optionally, a
synthetic one); ``recon_eval`` runs a trained model over a dataset and writes the official
metrics, PCK curves, the worst predictions drawn over their images, breakdowns by object and
by grasping / non-grasping, and the predictions (``predictions.npz``, which ``recon_score``
reads); ``recon_score`` scores a predictions file from any model.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.data.manifest import dataset_fingerprint, read_manifest
from pipeline.errors import BadData, ConfigError
from pipeline.paths import npz_bytes
from pipeline.stage import StageInputs, StageSummary, input_path, stage
from pipeline.storage import Location

SECTIONS = ("reconstruction", "hand.model")
WORST = 16


class TrainInputs(StageInputs):
    data: str = input_path("the real training dataset (images with MANO labels)")
    synthetic: str | None = input_path("a synthetic dataset mixed into training", None)
    val: str | None = input_path("a validation dataset choosing the best checkpoint (default: held-out "
                                 "sequences of the training data)", None)


class TrainSummary(StageSummary):
    steps: int
    best_step: int
    best_score_mm: float | None
    loss_first: float | None
    loss_last: float | None
    validation: dict | None
    datasets: dict
    model: str
    loss_curve: str


class EvalInputs(StageInputs):
    ckpt: str = input_path("a folder written by recon_train", local=True)
    data: str = input_path("the dataset to evaluate on")


class ScoreInputs(StageInputs):
    pred: str = input_path("predictions: JSON or npz, sample_id -> joints [21, 3] (and vertices [V, 3])",
                           local=True)
    data: str = input_path("the dataset the predictions are for")


class FilterInputs(StageInputs):
    ckpt: str = input_path("a reconstructor trained on the real training split (recon_train)", local=True)
    data: str = input_path("generated rows to judge (synth_generate)")
    val: str | None = input_path("real images whose errors set the auto thresholds (the reconstructor's own "
                                 "training data: its held-out rows are used; or real images it never saw)", None)


class FilterSummary(StageSummary):
    rows: int
    kept: int
    rejected: int
    pass_rate: float
    thresholds: dict[str, float]
    by_object: dict
    by_origin: dict
    by_sampler: dict
    files: dict[str, str]


class MetricsSummary(StageSummary):
    count: int
    joints: dict
    vertices: dict | None = None
    files: dict[str, str] = {}


def resolved(config: PipelineConfig):
    from pipeline.reconstruction.presets import resolve

    return resolve(config.reconstruction)


def dataset_hand(config: PipelineConfig, where) -> str:
    from pipeline.sampling.stage import hand_model_spec

    return hand_model_spec(config, read_manifest(where)[1])


@stage("recon_train", TrainInputs, TrainSummary, SECTIONS, reuse=False,
       resume_may_change=("reconstruction.max_steps", "reconstruction.num_workers"))
def recon_train(config: PipelineConfig, inputs: TrainInputs, out: Location) -> TrainSummary:
    """Train a reconstructor on real data (+ synthetic) (accelerate: CPU, a GPU, or several)."""
    from pipeline.reconstruction.train import train_reconstructor

    result = train_reconstructor(inputs.data, out.path, resolved(config), hand_model=dataset_hand(config, inputs.data),
                                 seed=config.seed, synthetic=inputs.synthetic, val=inputs.val,
                                 resume=config.run.resume, progress=config.run.progress, device=config.run.device)
    return TrainSummary(**result)


def _summary(metrics: dict, files: dict[str, str]) -> MetricsSummary:
    return MetricsSummary(count=metrics["count"], joints=metrics["joints"], vertices=metrics.get("vertices"),
                          files=files)


@stage("recon_eval", EvalInputs, MetricsSummary, ("reconstruction.procrustes", "reconstruction.eval_batch_size",
                                                  "hand.model"), uri_out=True)
def recon_eval(config: PipelineConfig, inputs: EvalInputs, out: Location) -> MetricsSummary:
    """Official metrics, PCK curves, the worst predictions drawn, breakdowns by object and grasping."""
    from pipeline.camera import project
    from pipeline.data.reader import ShardDataset
    from pipeline.imaging import png_bytes
    from pipeline.reconstruction.data import recon_dataset
    from pipeline.reconstruction.models import load_reconstructor
    from pipeline.reconstruction.predict import predict
    from pipeline.reconstruction.report import breakdown, worst_grid
    from pipeline.reconstruction.score import score_predictions

    recon = resolved(config)
    hand = dataset_hand(config, inputs.data)
    model = load_reconstructor(inputs.ckpt, hand if "model" in config.hand.model_fields_set else None)
    if model.config.hand_model != hand:
        raise BadData(f"the checkpoint predicts the hand model {model.config.hand_model!r}, the dataset is labelled "
                      f"with {hand!r}; set hand.model (--mano) to evaluate with another", inputs.data)
    model = model.to(config.run.device)
    dataset = recon_dataset(inputs.data, model.config.image_size)
    predictions = predict(model, dataset, batch_size=recon.eval_batch_size, progress=config.run.progress,
                          desc="recon eval")
    ids = [str(s) for s in predictions["sample_id"]]
    out.write_atomic("predictions.npz", npz_bytes({"sample_id": np.asarray(ids), "joints": predictions["joints"],
                                                   "vertices": predictions["vertices"]}))
    by_id = {sid: {"joints": j, "vertices": v} for sid, j, v in zip(ids, predictions["joints"], predictions["vertices"])}
    result = score_predictions(by_id, inputs.data, out, hand, recon.procrustes)  # what recon score computes
    errors = result["per_sample"]["joints_root_relative_mm"]
    out.write_json("breakdown.json", {
        name: {"by_object": breakdown(result["per_sample"][f"joints_{name}_mm"], predictions["object_id"]),
               "by_grasping": breakdown(result["per_sample"][f"joints_{name}_mm"], predictions["is_grasping"])}
        for name in ("root_relative", "procrustes")})
    worst = np.argsort(-errors, kind="stable")[:WORST]
    rows = ShardDataset(inputs.data, columns=["image", "K"])
    images, true_2d, pred_2d = [], [], []
    for index in worst.tolist():
        row = rows[index]
        K = row["K"].double().numpy()
        images.append(row["image"].permute(1, 2, 0).numpy())
        true_2d.append(project(predictions["gt_joints"][index], K))
        pred_2d.append(project(predictions["joints"][index], K))
    labels = [f"{ids[i]} {errors[i]:.1f} mm" for i in worst.tolist()]
    out.write_atomic("worst.png", png_bytes(worst_grid(images, np.asarray(true_2d), np.asarray(pred_2d), labels)))
    files = {name: out.address(name) for name in ("metrics.json", "per_sample.csv", "pck.png", "predictions.npz",
                                                   "breakdown.json", "worst.png")}
    return _summary(result["summary"], files)


@stage("recon_filter", FilterInputs, FilterSummary, ("filter", "reconstruction.procrustes",
                                                     "reconstruction.eval_batch_size", "hand.model"), uri_out=True)
def recon_filter(config: PipelineConfig, inputs: FilterInputs, out: Location) -> FilterSummary:
    """Judge generated images with a reconstructor trained on real data; keep those it reconstructs.

    ``out/kept`` and ``out/rejected`` hold them with their ``filter`` struct filled, beside the
    report and its pictures."""
    import contextlib

    from pipeline.data.overview import sample_grid
    from pipeline.data.reader import ShardDataset
    from pipeline.data.shards import ShardWriter
    from pipeline.imaging import png_bytes
    from pipeline.reconstruction.data import recon_dataset
    from pipeline.reconstruction.filter import (
        CRITERIA,
        auto_thresholds,
        fixed_thresholds,
        histograms_png,
        kept_mask,
        pass_rates,
        row_errors,
    )
    from pipeline.reconstruction.models import load_reconstructor

    recon = resolved(config)
    thresholds = fixed_thresholds(config.filter.thresholds, inputs.val is not None)  # before any model runs
    model = load_reconstructor(inputs.ckpt).to(config.run.device)
    spread = config.filter.hypotheses_spread_mm
    if spread is not None:
        if "hypotheses" not in model.config:
            raise ConfigError(f"filter.hypotheses_spread_mm: the {type(model).__name__} reconstructor "
                              "samples one mesh; a diffusion reconstructor (diffhand) samples several", inputs.ckpt)
        model.register_to_config(hypotheses=config.filter.hypotheses)
    generated = recon_dataset(inputs.data, model.config.image_size)
    real = recon_dataset(inputs.val, model.config.image_size) if inputs.val is not None else None  # checked first
    if real is not None and len(real) == 0:
        raise BadData("has no rows to set thresholds from", inputs.val)
    threshold_rows = None if real is None else rows_setting_thresholds(inputs.ckpt, inputs.val)
    errors = row_errors(model, generated, None, recon.eval_batch_size, recon.procrustes, config.run.progress)
    real_errors = None
    if real is not None:
        real_errors = row_errors(model, real, threshold_rows, recon.eval_batch_size, recon.procrustes)
    if thresholds is None:
        thresholds = auto_thresholds(real_errors, config.filter.auto_percentile)
    kept = kept_mask(errors, thresholds, spread)
    rows = ShardDataset(inputs.data, decode=False)
    size, name = rows.manifest.get("image_size"), rows.manifest["name"]
    record = {"thresholds": thresholds, "generated": dataset_fingerprint(inputs.data)}
    chosen = {True: [], False: []}
    labels = {True: "kept", False: "rejected"}
    with contextlib.ExitStack() as stack:
        writers = {keep: stack.enter_context(ShardWriter(
            out.child(label), name=f"{name}_{label}", image_size=size, config=record,
            rows_per_shard=config.data.rows_per_shard, overwrite=config.run.overwrite,
            info={"hand_model": rows.manifest.get("hand_model")})) for keep, label in labels.items()}
        produced = {True: 0, False: 0}
        for index, keep in enumerate(kept.tolist()):
            writer = writers[keep]
            if produced[keep] >= writer.resume_rows:
                row = rows.raw(index)
                writer.write({**row, "filter": {**{c: float(errors[c][index]) for c in CRITERIA}, "kept": keep}})
                if len(chosen[keep]) < 8:
                    chosen[keep].append(row)
            produced[keep] += 1
    report = {"rows": int(len(kept)), "kept": int(kept.sum()), "rejected": int((~kept).sum()),
              "pass_rate": round(float(kept.mean()), 4) if len(kept) else 0.0, "thresholds": thresholds,
              "by_object": pass_rates(kept, errors["object_id"]), "by_origin": pass_rates(kept, errors["origin"]),
              "by_sampler": pass_rates(kept, errors["sampler"])}
    out.write_json("report.json", {**report, "threshold_spec": config.filter.thresholds,
                                   "errors_mm": {c: [round(float(v), 3) for v in errors[c]]
                                                 for c in (*CRITERIA, "spread_mm") if c in errors}})
    out.write_atomic("histograms.png", histograms_png(errors, thresholds, real_errors))
    for keep, label in labels.items():
        if chosen[keep]:
            out.write_atomic(f"{label}_grid.png", png_bytes(sample_grid(chosen[keep], size or 128)))
    files = {name: out.address(name) for name in ("report.json", "histograms.png", "kept", "rejected")}
    return FilterSummary(**report, files=files)


def rows_setting_thresholds(ckpt: str, val: str) -> list[int] | None:
    """The rows of ``val`` that set auto thresholds: all of another dataset, or the rows the
    reconstructor held out of ``val`` when ``val`` is its training data. Its errors on frames it
    trained on are smaller than on new ones, and thresholds from them would reject good images."""
    from pipeline.reconstruction.models import RECORD
    from pipeline.training import read_record

    datasets = read_record(ckpt, RECORD, "recon train").get("datasets", {})
    trained_on = datasets.get("real", {})
    if trained_on.get("fingerprint") != dataset_fingerprint(val):
        return None
    if not trained_on.get("validation_rows"):
        validated_on = datasets.get("validation", {}).get("name")
        why = f"it was validated on {validated_on}" if validated_on else "its reconstruction.val_fraction was 0"
        raise ConfigError(f"val: is the training data of the reconstructor {ckpt}, which held out none of its rows "
                          f"({why}); its errors on frames it trained on would set the auto thresholds too tight: "
                          "pass real images it never saw as --val", val)
    return trained_on["validation_rows"]


@stage("recon_score", ScoreInputs, MetricsSummary, ("reconstruction.procrustes", "hand.model"), uri_out=True)
def recon_score(config: PipelineConfig, inputs: ScoreInputs, out: Location) -> MetricsSummary:
    """Score any model's predictions with the official-parity metrics."""
    from pipeline.reconstruction.score import score_file

    metrics = score_file(inputs.pred, inputs.data, out, dataset_hand(config, inputs.data),
                         config.reconstruction.procrustes)
    return _summary(metrics, {name: out.address(name) for name in ("metrics.json", "per_sample.csv", "pck.png")})
