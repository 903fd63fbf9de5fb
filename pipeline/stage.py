"""The one shape of every stage: ``stage_function(config, inputs, out) -> summary``.

A stage is a plain function decorated with :func:`stage`. It takes the validated
:class:`~pipeline.config.PipelineConfig` (and reads its own sections), a small pydantic model
of its inputs (paths or URIs) and an output folder, and returns a typed
:class:`StageSummary`, which is also written to ``OUT/.summary.json``. The decorator does
what every stage needs, the same way for all of them:

- validates ``config`` and ``inputs`` (dicts are accepted: the Prefect UI sends JSON), with
  errors that name the key;
- checks the output before any work (:func:`preflight_output`): a folder or creatable,
  writable, not an input and not inside one, no input inside it, some free space;
- holds the output folder's lock for the run, so a second process is refused;
- computes the run's identity (the stage, the config sections it reads, the fingerprints of
  its inputs, the code version) and, when the folder already holds a finished run of that
  identity, returns its summary marked ``reused`` without redoing anything;
- for a trainer, continues only the same training (``.training.json``: its inputs and
  settings) and runs in every process an ``accelerate launch`` started (:class:`Team`);
- times the run and writes the summary.

Stage functions live in a module called ``stage.py`` of their package and are named after
the stage (``pipeline.synthesis.stage.synth_train``); the command line and the Prefect tasks
are a few lines over them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from pipeline.config import (
    Ordered,
    PipelineConfig,
    absolute_path,
    config_record,
    parse_device,
    validate_config,
)
from pipeline.errors import ConfigError, DatasetConflict, InputError, MissingResource
from pipeline.storage import (
    JOURNAL,
    LOCK,
    MANIFEST,
    Location,
    code_version,
    differing_keys,
    folder_lock,
    is_uri,
    manifest_fingerprint,
    refuse_uri,
    writing_for,
)

SUMMARY = ".summary.json"
TRAINING_RECORD = ".training.json"  # a trainer's inputs and settings, which a resumed run must match
URI_OUTPUT_HINT = " (the stages that write datasets take one)"
MIN_FREE_BYTES = 1 << 20  # a first shard, a checkpoint's config: refuse a disk with less before any work


class StageInputs(BaseModel):
    """Base of every stage's inputs. Fields made with :func:`input_path` are paths the stage
    reads (checked against the output, fingerprinted for the run's identity)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def _path_fields(self, local_only: bool = False) -> dict[str, str | list[str]]:
        """``field -> value`` of the input path fields given (``local_only``: of those read with
        local file APIs only)."""
        found = {}
        for name, field in type(self).model_fields.items():
            value, extra = getattr(self, name), field.json_schema_extra or {}
            if extra.get("input_path") and value and (extra.get("local") or not local_only):
                found[name] = value
        return found

    def input_paths(self, local_only: bool = False) -> dict[str, str]:
        """``field -> path`` of every input path given (a list field gives ``field[i]`` entries)."""
        paths = {}
        for name, value in self._path_fields(local_only).items():
            if isinstance(value, list):
                paths.update({f"{name}[{i}]": item for i, item in enumerate(value) if item})
            else:
                paths[name] = value
        return paths

    def absolute(self) -> StageInputs:
        """These inputs with their relative paths made absolute from the current folder, for a
        task that runs on a worker started in another folder."""
        return self.model_copy(update={
            name: [absolute_path(v) for v in value] if isinstance(value, list) else absolute_path(value)
            for name, value in self._path_fields().items()})


def input_path(description: str, default: Any = ..., local: bool = False) -> Any:
    """A field of :class:`StageInputs` holding a path or URI the stage reads; ``local``: read with
    local file APIs (a checkpoint, a raw dataset, a MANO file), so a URI is refused before any work."""
    extra = {"input_path": True, "local": True} if local else {"input_path": True}
    return Field(default, description=description, json_schema_extra=extra)


RowRange = Annotated[tuple[NonNegativeInt, NonNegativeInt], Ordered]


def row_range(what: str) -> Any:
    """The optional ``rows`` input of a stage that can do part of a dataset: rows [START, STOP),
    so that a flow splits one dataset's work into tasks (a STOP past the end stops there)."""
    return Field(None, description=f"START,STOP: only rows [START, STOP) (a batch of a flow's {what})")


class StageSummary(BaseModel):
    """What a stage did: typed fields per stage on top of these."""

    model_config = ConfigDict(extra="forbid")

    stage: str = ""
    out: str = ""
    seconds: float = 0.0
    reused: bool = Field(False, description="the output already held a finished run of the same identity")
    identity: str = ""
    identity_parts: dict[str, Any] = Field({}, description="digests of the config sections, code and each input")
    rerun_because: str | None = Field(None, description="why a finished run in the folder was not reused")

    def __getitem__(self, key: str):
        """``summary["rows"]`` reads like the JSON it is written as."""
        return getattr(self, key)

    def as_reused(self) -> StageSummary:
        """This finished run's summary as a re-run that reused it reports it: subclasses with
        "done this run" fields zero them here."""
        return self.model_copy(update={"reused": True})


class ReportSummary(StageSummary):
    """The summary of a stage that writes files other than a dataset (a mesh, a picture, a
    report): each file by role, and what the stage found."""

    files: dict[str, str | None] = {}
    details: dict[str, Any] = {}


class Stage:
    """A decorated stage function; call it like the function."""

    def __init__(self, func: Callable, name: str, inputs: type[StageInputs], summary: type[StageSummary],
                 sections: tuple[str, ...], reuse: bool, uri_out: bool = False,
                 resume_may_change: tuple[str, ...] | None = None):
        functools.update_wrapper(self, func)
        self.func, self.name, self.inputs_model, self.summary_model = func, name, inputs, summary
        self.sections, self.reuse, self.uri_out, self.resume_may_change = sections, reuse, uri_out, resume_may_change

    def coerce(self, config, inputs) -> tuple[PipelineConfig, StageInputs]:
        if isinstance(config, dict):
            config = validate_config(config, PipelineConfig, "config")
        elif not isinstance(config, PipelineConfig):
            raise ConfigError(f"expected a PipelineConfig or a mapping, got {type(config).__name__}", "config")
        if isinstance(inputs, dict):
            inputs = validate_config(inputs, self.inputs_model, f"{self.name} inputs")
        elif not isinstance(inputs, self.inputs_model):
            raise ConfigError(f"expected {self.inputs_model.__name__}, got {type(inputs).__name__}",
                              f"{self.name} inputs")
        return config, inputs

    def identity_parts(self, config: PipelineConfig, inputs: StageInputs) -> dict[str, Any]:
        """Digests of everything that decides this stage's output: the config sections it reads
        and its other settings, the code, and each input's content."""
        settings = {"stage": self.name, "config": config_record(config, self.sections),
                    "inputs": {name: value for name, value in inputs.model_dump(mode="json").items()
                               if not (type(inputs).model_fields[name].json_schema_extra or {}).get("input_path")}}
        return {"settings": _digest(settings), "code": code_version(),
                "inputs": {name: fingerprint(path) for name, path in inputs.input_paths().items()}}

    def start_or_continue_training(self, location: Location, config: PipelineConfig, parts: dict[str, Any]) -> None:
        """A trainer's folder: a run that continues the one in the folder must train on the same
        inputs with the same settings, but those in ``resume_may_change`` (its steps, its loader
        processes). A model trained on one dataset and resumed on another would record only the
        second, and a test set the first held would be scored by a model that saw it. With
        ``overwrite`` a training of other inputs or settings, or one not asked to resume, is
        started again."""
        path = Path(location.path)
        record = {"inputs": parts["inputs"], "settings": config_record(config, self.sections)}
        before = None
        if (path / TRAINING_RECORD).exists():
            try:
                before = json.loads((path / TRAINING_RECORD).read_text())
            except (ValueError, UnicodeDecodeError):
                before = {}
        changed = training_changes(before, record, self.resume_may_change) if before is not None else None
        if config.run.overwrite and not _holds_nothing(location) and \
                (changed or before is None or not config.run.resume):
            if not _holds_a_training(location, self.name):
                raise DatasetConflict(f"holds files that are not a {self.name} run, and overwrite replaces only a "
                                      "training run: choose a new folder", location)
            _remove_contents(location)
            before, changed = None, None
        if changed:
            raise DatasetConflict(f"holds a training run of other {changed}; continuing it would mix the two: "
                                  "pass overwrite=True to start again, or choose a new folder", location)
        if before is None and _holds_nothing(location):
            location.write_json(TRAINING_RECORD, record)

    def __call__(self, config, inputs, out) -> StageSummary:
        config, inputs = self.coerce(config, inputs)
        for name, path in inputs.input_paths(local_only=True).items():
            refuse_uri(path, f"{self.name} reads {name}")
        location = preflight_output(out, list(inputs.input_paths().values()))
        if not (location.is_local or self.uri_out):
            refuse_uri(out, f"{self.name} writes its files", URI_OUTPUT_HINT)
        config = resolved_device(config)
        team = Team(self, config.run.device)
        parts = self.identity_parts(config, inputs)
        identity = _digest(parts)
        started = time.perf_counter()
        with folder_lock(location) if team.main else contextlib.nullcontext():
            reuse = self.reuse or config.run.resume or config.run.overwrite  # overwrite replaces only another run
            previous = finished_summary(location, identity, self.summary_model) if reuse else None
            team.wait()  # every process has read the folder before the main one changes it
            if previous is not None:
                return previous.as_reused().model_copy(update={"seconds": round(time.perf_counter() - started, 2)})
            because = rerun_reason(location, parts, reuse)
            if self.resume_may_change is not None:
                team.on_main(lambda: self.start_or_continue_training(location, config, parts))
            fresh = _holds_nothing(location, also=(TRAINING_RECORD,))
            try:
                with writing_for(parts["inputs"]):
                    summary = self.func(config, inputs, location)
            except InputError as exc:  # bad input found mid-way: what this run began is no use
                if team.main and fresh and not isinstance(exc, MissingResource | DatasetConflict):
                    _remove_contents(location)  # a full disk keeps its shards
                raise
            summary = summary.model_copy(update={"stage": self.name, "out": str(out), "identity": identity,
                                                 "identity_parts": parts, "rerun_because": because,
                                                 "seconds": round(time.perf_counter() - started, 2)})
            if team.main:
                location.write_json(SUMMARY, summary.model_dump(mode="json"))
        return summary


def launched_processes() -> tuple[int, int]:
    """This process's rank and the number of processes a launcher (``accelerate launch``,
    ``torchrun``) started for the command: ``(0, 1)`` when none did."""
    processes = int(os.environ.get("WORLD_SIZE") or 1)
    return (int(os.environ.get("RANK") or 0) if processes > 1 else 0), processes


class Team:
    """The processes a stage runs in: this one, or the ones ``accelerate launch`` (torchrun)
    started for a trainer, which split its batches. Only the first, the main process, locks the
    output folder and writes its bookkeeping; the trainers write their files from it too."""

    def __init__(self, stage: Stage, device: str):
        self.state = None
        processes = launched_processes()[1]
        if processes > 1:
            if stage.resume_may_change is None:
                raise ConfigError(f"{stage.name} runs in one process; of the stages only the trainers (synth train, "
                                  f"recon train) run under accelerate launch, and this one was started in {processes}")
            from accelerate import PartialState

            self.state = PartialState(cpu=device == "cpu")  # joins the launch's process group
        self.main = self.state is None or self.state.is_main_process

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def on_main(self, work: Callable[[], None]) -> None:
        """``work()`` on the main process; an ``InputError`` it raises is raised on every process,
        so that none goes on to train alone."""
        failure = None
        if self.main:
            try:
                work()
            except InputError as exc:
                failure = exc
        if self.state is not None:
            from accelerate.utils import broadcast_object_list

            failure = broadcast_object_list([failure])[0]
        if failure is not None:
            raise failure


def resolved_device(config: PipelineConfig) -> PipelineConfig:
    """``config`` with ``run.device`` resolved (``auto`` to ``cuda`` or ``cpu``, a GPU checked to
    exist): the one answer every computing part of a stage reads, through ``config.run.device``."""
    device = parse_device(config.run.device)
    if device == config.run.device:
        return config
    return config.model_copy(update={"run": config.run.model_copy(update={"device": device})})


def stage(name: str, inputs: type[StageInputs], summary: type[StageSummary], sections: tuple[str, ...], *,
          reuse: bool = True, uri_out: bool = False, resume_may_change: tuple[str, ...] | None = None
          ) -> Callable[[Callable], Stage]:
    """Make ``func(config, inputs, out: Location) -> summary`` a stage (module docstring).
    ``sections``: the config sections that shape its output (recorded, and part of its
    identity); ``reuse``: return a finished run's summary instead of running again (stages
    that refuse to continue a run unasked, the trainers, reuse only with ``run.resume``);
    ``uri_out``: the stage writes every file through ``out`` (a :class:`Location`), so ``out``
    may be a filesystem URI (``s3://...``). Other stages (the trainers, pictures, the registry)
    write with local file APIs and refuse one before any work. ``resume_may_change``: the stage
    is a trainer, and these config keys (its steps, its loader processes) are the only settings
    a resumed run may change (:meth:`Stage.start_or_continue_training`)."""
    return lambda func: Stage(func, name, inputs, summary, sections, reuse, uri_out, resume_may_change)


CONTENT_BYTES = 8 << 30  # hashed per input at most; a larger folder (a raw dataset) is fingerprinted by its listing


def fingerprint(path: str) -> str:
    """What an input holds: a dataset's content digest (from its manifest, which vouches for
    every shard's sha256); for any other file or folder (predictions, thresholds, checkpoints,
    configs), the sha256 of its bytes, hidden files (summaries, locks, journals) aside. A folder
    of more than ``CONTENT_BYTES`` (a raw DexYCB) is fingerprinted by its listing: names, sizes
    and modification times."""
    location = Location.parse(path)
    try:
        if location.exists(MANIFEST):
            return "dataset:" + manifest_fingerprint(json.loads(location.read_bytes(MANIFEST)))
    except (InputError, OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return content_fingerprint(location)
    except OSError:
        return "path:" + (location.path if location.is_local else location.text)


def content_fingerprint(location: Location) -> str:
    import pyarrow.fs as pafs

    info = location.fs.get_file_info(location.path)
    if info.type == pafs.FileType.NotFound:
        return "missing:" + location.text
    if info.type == pafs.FileType.File:
        files = [info]
    else:
        files = sorted((entry for entry in location.fs.get_file_info(pafs.FileSelector(location.path, recursive=True))
                        if entry.type == pafs.FileType.File), key=lambda entry: entry.path)
        files = [entry for entry in files if not any(
            part.startswith(".") for part in os.path.relpath(entry.path, location.path).split(os.sep))]
    digest = hashlib.sha256()
    by_listing = sum(entry.size for entry in files) > CONTENT_BYTES
    for entry in files:
        digest.update(f"{os.path.relpath(entry.path, location.path)}\0{entry.size}\0".encode())
        if by_listing:
            digest.update(str(entry.mtime_ns).encode())
            continue
        with location.fs.open_input_stream(entry.path) as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return ("listing:" if by_listing else "content:") + digest.hexdigest()[:20]


def _holds_nothing(location: Location, also: tuple[str, ...] = ()) -> bool:
    """A local output folder that is not there yet, or holds only a lock and the launcher's log
    (and the files named in ``also``)."""
    from pipeline.paths import FLOW_LOG

    path = Path(location.path)
    return location.is_local and (not path.exists() or set(os.listdir(path)) <= {LOCK, FLOW_LOG, *also})


def _holds_a_training(location: Location, stage: str) -> bool:
    """The folder holds a run of this trainer: its record, its summary or a checkpoint."""
    from pipeline.paths import CHECKPOINT_PREFIX

    path = Path(location.path)
    try:
        summary = json.loads((path / SUMMARY).read_text()) if (path / SUMMARY).exists() else {}
    except (ValueError, UnicodeDecodeError):
        summary = {}
    return (path / TRAINING_RECORD).exists() or (isinstance(summary, dict) and summary.get("stage") == stage) or \
        any(entry.is_dir() and entry.name.startswith(CHECKPOINT_PREFIX) for entry in path.iterdir())


def training_changes(before: dict, now: dict, may_change: tuple[str, ...] = ()) -> str | None:
    """What differs between two trainers' records, in words (``inputs (data); settings
    (reconstruction.learning_rate)``), the dotted settings in ``may_change`` aside; or None."""
    inputs = differing_keys(before.get("inputs", {}), now["inputs"])  # flat: one fingerprint per input
    settings = [key for key in differing_keys(before.get("settings", {}), now["settings"])
                if not any(key == free or key.startswith(free + ".") for free in may_change)]
    parts = [f"{what} ({', '.join(names)})" for what, names in (("inputs", inputs), ("settings", settings)) if names]
    return "; ".join(parts) or None


def _remove_contents(location: Location) -> None:
    from pipeline.paths import FLOW_LOG

    for entry in Path(location.path).iterdir():
        if entry.name in (LOCK, FLOW_LOG):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _digest(record) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:20]


def rerun_reason(location: Location, parts: dict[str, Any], reuse: bool) -> str | None:
    """Why the finished run already in the folder (if any) is not reused, in words."""
    if not location.exists(SUMMARY):
        return None
    try:
        before = json.loads(location.read_bytes(SUMMARY)).get("identity_parts") or {}
    except (ValueError, UnicodeDecodeError, OSError, AttributeError):
        return "the previous summary is unreadable"
    if not reuse:
        return "a trainer asked neither to resume nor to overwrite"
    changed = [f"input {name} changed" for name, value in parts["inputs"].items()
               if (before.get("inputs") or {}).get(name) != value]
    changed += [what for key, what in (("settings", "settings changed"), ("code", "code changed"))
                if before.get(key) != parts[key]]
    return "; ".join(changed) or "the previous run did not finish intact"


def finished_summary(location: Location, identity: str, model: type[StageSummary]) -> StageSummary | None:
    """The summary of a finished run of ``identity`` in the folder, if there is one."""
    if not location.exists(SUMMARY):
        return None
    try:
        payload = json.loads(location.read_bytes(SUMMARY))
        if payload.get("identity") != identity or not _intact(location) or not _files_there(payload):
            return None
        return model.model_validate(payload)
    except (ValueError, UnicodeDecodeError, OSError, AttributeError):
        return None


def _files_there(payload: dict) -> bool:
    """Every local file a summary lists (a mesh, a picture, a registry record) still exists:
    a finished run whose output was deleted is run again, not reported as reused."""
    files = payload.get("files") if isinstance(payload.get("files"), dict) else {}
    local = [Location.parse(path) for path in files.values() if isinstance(path, str) and path]
    return all(Path(where.path).exists() for where in local if where.is_local)


def _intact(location: Location) -> bool:
    """A dataset output's shards are all there with their recorded sizes (a cheap check; the
    checksums are ``data validate``'s job)."""
    if location.exists(JOURNAL):
        return False
    if not location.exists(MANIFEST):
        return True
    manifest = json.loads(location.read_bytes(MANIFEST))
    return all(location.exists(shard["path"]) and
               location.fs.get_file_info(location.join(shard["path"])).size == shard["bytes"]
               for shard in manifest.get("shards", []))


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        if path.parent == path:
            break
        path = path.parent
    return path


def _inside(child: str, parent: str, sep: str = os.sep) -> bool:
    return child == parent or child.startswith(parent.rstrip(sep) + sep)


def preflight_output(out, inputs: list[str] = (), free_bytes: int = MIN_FREE_BYTES) -> Location:
    """Check before any work that ``out`` can be written and is no input: a folder or
    creatable, writable, not equal to or inside an input, holding no input, with some free
    space. An object store's URI gets the input check only (it answers when written). Returns its
    Location."""
    location = Location.parse(out)
    if not location.is_local:  # an object store: the input check only, on the URIs' text
        for source in inputs:
            if is_uri(source):
                _refuse_overlap(_uri_folder(str(out)), _uri_folder(source), source, out, "/")
        return location
    path = Path(location.path)
    if path.exists() and not path.is_dir():
        raise DatasetConflict("is a file; expected an output folder (or a path where one can be made)", out)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise InputError(f"cannot make the output folder: {existing} is a file", out)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output folder: {existing} is not writable (read-only or no "
                         "permission)", out)
    probe_writable(existing, out)
    real_out = os.path.realpath(path)
    for source in inputs:
        source_location = Location.parse(source)
        if not source_location.is_local:
            continue
        _refuse_overlap(real_out, os.path.realpath(source_location.path), source, out)
    free = shutil.disk_usage(existing).free
    if free < free_bytes:
        raise MissingResource(f"only {free >> 10} KiB free on the disk of {existing}; at least "
                              f"{free_bytes >> 20} MiB are needed", out)
    return location


def _refuse_overlap(real_out: str, real_in: str, source: str, out, sep: str = os.sep) -> None:
    """The output may be neither an input (or inside one) nor hold one: a run with overwrite
    would delete what it reads."""
    if _inside(real_out, real_in, sep):
        raise DatasetConflict(f"is the input {source} or inside it; choose an output folder elsewhere", out)
    if _inside(real_in, real_out, sep):
        raise DatasetConflict(f"holds the input {source}; choose an output folder elsewhere", out)


def _uri_folder(text: str) -> str:
    """A URI's folder without its query (``?endpoint_override=...``), to compare two URIs by."""
    parts = urllib.parse.urlsplit(text)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def probe_writable(existing: Path, out) -> None:
    """``os.access`` says yes on some read-only mounts: create and remove a hidden file."""
    probe = existing / f".handbooster-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write the output folder: {existing}: {exc.strerror}", out) from None
