"""Jobs and their typed results -> proto messages, field by field.

Every result field is named here once, so a field missing on either side is
an AttributeError or a protobuf ValueError in the tests, never a silent drop.
Resource names and proto enum values are made here, not in the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf import struct_pb2
from sipapi.v1 import common_pb2

from sipd.contracts.job_record import JobRecord, JobState
from sipd.contracts.jobs import (
    AccuracyReport,
    DiagnosticsResult,
    ExportResult,
    InspectResult,
    JobType,
    LabelCount,
    MasksResult,
    PredictResult,
    PrepareResult,
    PreprocessResult,
    RasterInfo,
    Split,
    SuggestResult,
    TestResult,
    TrainResult,
)
from sipd.services.common import split_enum, timestamp


def model_name(project: str, version: int) -> str:
    return f"projects/{project}/models/{version}"


def scene_name(project: str, scene: str) -> str:
    return f"projects/{project}/scenes/{scene}"


def label_count(c: LabelCount) -> common_pb2.LabelCount:
    return common_pb2.LabelCount(
        class_name=c.class_name, split=split_enum(c.split), pixels=c.pixels
    )


def raster_info(info: RasterInfo) -> common_pb2.RasterInfo:
    msg = common_pb2.RasterInfo(
        path=info.path,
        driver=info.driver,
        width=info.width,
        height=info.height,
        band_count=info.band_count,
        dtype=info.dtype,
        band_names=info.band_names,
        crs=info.crs,
        transform=info.transform,
        block_shape=info.block_shape,
    )
    if info.nodata is not None:
        msg.nodata = info.nodata
    return msg


def accuracy_report(
    report: AccuracyReport, model: str = "", scenes: Iterable[str] = ()
) -> common_pb2.AccuracyReport:
    return common_pb2.AccuracyReport(
        model=model,
        overall_accuracy=report.overall_accuracy,
        kappa=report.kappa,
        per_class=[
            common_pb2.ClassAccuracy(
                value=c.value,
                name=c.name,
                precision=c.precision,
                recall=c.recall,
                f1=c.f1,
                iou=c.iou,
                support=c.support,
            )
            for c in report.per_class
        ],
        confusion_matrix=[common_pb2.ConfusionRow(counts=row) for row in report.confusion_matrix],
        class_names=report.class_names,
        pixels=report.pixels,
        scenes=list(scenes),
    )


def train_result(r: TrainResult) -> common_pb2.TrainResult:
    return common_pb2.TrainResult(
        model=model_name(r.project, r.version),
        version=r.version,
        epochs_run=r.epochs_run,
        best_epoch=r.best_epoch,
        best_val_accuracy=r.best_val_accuracy or 0.0,
        history=[
            common_pb2.EpochMetrics(
                epoch=h.epoch,
                loss=h.loss,
                train_accuracy=h.train_accuracy,
                # The proto documents: equals train_accuracy when there are no val pixels.
                val_accuracy=h.val_accuracy if h.val_accuracy is not None else h.train_accuracy,
            )
            for h in r.history
        ],
        onnx_max_abs_diff=r.onnx_max_abs_diff,
        seconds=r.seconds,
    )


def mask_summary(project: str, r: MasksResult) -> common_pb2.MaskSummary:
    totals: dict[tuple[str, Split], int] = {}
    scenes = []
    for s in r.scenes:
        for c in s.counts:
            totals[(c.class_name, c.split)] = totals.get((c.class_name, c.split), 0) + c.pixels
        scenes.append(
            common_pb2.SceneMasks(
                scene=scene_name(project, s.scene),
                paths={str(split): path for split, path in s.paths.items()},
                counts=[label_count(c) for c in s.counts],
                conflicting_pixels=s.conflicting_pixels,
                pixels_in_several_splits=s.pixels_in_several_splits,
            )
        )
    return common_pb2.MaskSummary(
        scenes=scenes,
        totals=[
            label_count(LabelCount(class_name=name, split=split, pixels=n))
            for (name, split), n in totals.items()
        ],
    )


def scene_prediction(s: Any, *, with_paths: bool = True) -> common_pb2.ScenePrediction:
    """`with_paths` False for PredictStream: daemon paths mean nothing to a remote client."""
    msg = common_pb2.ScenePrediction(
        width=s.width,
        height=s.height,
        pixels=s.pixels,
        class_pixels=s.class_pixels,
        class_area_m2=s.class_area_m2,
        seconds=s.seconds,
        mpx_per_s=s.mpx_per_s,
        warnings=s.warnings,
    )
    if s.mean_uncertainty is not None:
        msg.mean_uncertainty = s.mean_uncertainty
    if s.uncertain_share is not None:
        msg.uncertain_share = s.uncertain_share
    if s.preprocess is not None:
        msg.recipe = s.preprocess.recipe_label
    if with_paths:
        msg.input = s.input
        msg.output = s.output
        msg.confidence = s.confidence
        msg.probabilities = s.probabilities
        msg.quicklook = s.quicklook
        msg.uncertainty = s.uncertainty
        if s.preprocess is not None and s.keep_preprocessed:
            msg.preprocessed = s.preprocessed
    return msg


def _inspect(job: JobRecord, r: InspectResult, msg: common_pb2.Job) -> None:
    msg.inspect.info.CopyFrom(raster_info(r.info))
    for s in r.statistics:
        msg.inspect.statistics.add(
            band=s.band, valid_pixels=s.valid_pixels, min=s.min, max=s.max, mean=s.mean, std=s.std
        )


def _diagnostics(job: JobRecord, r: DiagnosticsResult, msg: common_pb2.Job) -> None:
    msg.diagnostics.CopyFrom(
        common_pb2.DiagnosticsResult(
            device=r.device,
            device_name=r.device_name,
            gflops=r.gflops,
            iterations=r.iterations,
            seconds=r.seconds,
            onnxruntime_providers=r.onnxruntime_providers,
            torch_version=r.torch_version,
            onnxruntime_version=r.onnxruntime_version,
        )
    )


def _masks(job: JobRecord, r: MasksResult, msg: common_pb2.Job) -> None:
    msg.masks.CopyFrom(mask_summary(job.project, r))


def _prepare(job: JobRecord, r: PrepareResult, msg: common_pb2.Job) -> None:
    msg.prepare.CopyFrom(
        common_pb2.PrepareResult(
            chips=r.chips,
            chip_size=r.chip_size,
            labeled_pixels=[label_count(c) for c in r.labeled_pixels],
            normalization_mean=r.normalization_mean,
            normalization_std=r.normalization_std,
            scenes=[scene_name(job.project, s) for s in r.scenes],
        )
    )


def _train(job: JobRecord, r: TrainResult, msg: common_pb2.Job) -> None:
    msg.train.CopyFrom(train_result(r))


def _test(job: JobRecord, r: TestResult, msg: common_pb2.Job) -> None:
    scenes = [scene_name(r.project, s) for s in r.scenes]
    msg.test.CopyFrom(accuracy_report(r.report, model_name(r.project, r.version), scenes))


def _predict(job: JobRecord, r: PredictResult, msg: common_pb2.Job) -> None:
    msg.predict.CopyFrom(
        common_pb2.PredictResult(
            model=model_name(r.project, r.version),
            scenes=[scene_prediction(s) for s in r.scenes],
            provider=r.provider,
            seconds=r.seconds,
        )
    )


def _export(job: JobRecord, r: ExportResult, msg: common_pb2.Job) -> None:
    msg.export.CopyFrom(
        common_pb2.ExportResult(
            model=model_name(r.project, r.version),
            files=r.files,
            max_abs_diff=r.max_abs_diff,
            source_model=model_name(r.project, r.source_version),
        )
    )


def _preprocess(job: JobRecord, r: PreprocessResult, msg: common_pb2.Job) -> None:
    msg.preprocess.CopyFrom(
        common_pb2.PreprocessResult(
            preprocessor=r.preprocessor,
            outputs=[r.output],
            info=raster_info(r.info),
            metadata=r.metadata,
            step_seconds=r.step_seconds,
            seconds=r.seconds,
            recipe=r.recipe,
            recipe_version=r.recipe_version,
            scene=scene_name(r.project, r.scene) if r.scene else "",
            input=r.input,
        )
    )


def _suggest(job: JobRecord, r: SuggestResult, msg: common_pb2.Job) -> None:
    msg.suggest.CopyFrom(
        common_pb2.SuggestResult(
            model=model_name(r.project, r.version),
            regions=[
                common_pb2.SuggestedRegion(
                    rank=g.rank,
                    scene=scene_name(r.project, g.scene),
                    row=g.row,
                    col=g.col,
                    size=g.size,
                    uncertainty=g.uncertainty,
                    class_mix=g.class_mix,
                    majority_class=g.majority_class,
                )
                for g in r.regions
            ],
            geojson=r.geojson,
            scenes=[scene_name(r.project, s) for s in r.scenes],
            candidates=r.candidates,
            seconds=r.seconds,
        )
    )


_RESULTS: dict[JobType, Callable[[JobRecord, Any, common_pb2.Job], None]] = {
    JobType.INSPECT: _inspect,
    JobType.DIAGNOSTICS: _diagnostics,
    JobType.MASKS: _masks,
    JobType.PREPARE: _prepare,
    JobType.TRAIN: _train,
    JobType.TEST: _test,
    JobType.PREDICT: _predict,
    JobType.EXPORT: _export,
    JobType.PREPROCESS: _preprocess,
    JobType.SUGGEST: _suggest,
}


def job_to_proto(job: JobRecord) -> common_pb2.Job:
    msg = common_pb2.Job(
        name=job.name,
        type=str(job.type),
        state=common_pb2.Job.State.Value(str(job.state)),
        project=f"projects/{job.project}" if job.project else "",
        error=job.error,
        error_code=str(job.error_code or ""),
        source=job.source,
    )
    for field in ("create_time", "start_time", "end_time"):
        ts = timestamp(getattr(job, field))
        if ts is not None:
            getattr(msg, field).CopyFrom(ts)
    if job.params is not None:
        params = struct_pb2.Struct()
        params.update(job.params.model_dump(mode="json"))
        msg.params.CopyFrom(params)
    progress = job.progress
    if progress is not None:
        msg.progress.stage = progress.stage
        msg.progress.fraction = progress.fraction
        msg.progress.message = progress.message
        msg.progress.eta_seconds = progress.eta_seconds
        for key, value in progress.metrics.items():
            msg.progress.metrics[key] = value
        ts = timestamp(progress.time)
        if ts is not None:
            msg.progress.update_time.CopyFrom(ts)
    if job.state == JobState.SUCCEEDED:
        msg.progress.fraction = 1.0
    if job.result is not None:
        _RESULTS[job.type](job, job.result, msg)
    return msg
