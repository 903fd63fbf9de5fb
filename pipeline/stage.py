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
- times the run and writes the summary.

Stage functions live in a module called ``stage.py`` of their package and are named after
the stage (``pipeline.synthesis.stage.synth_train``); the command line and the Prefect tasks
are a few lines over them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import PipelineConfig, config_record, parse_device, validate_config
from pipeline.data.storage import Location, folder_lock
from pipeline.errors import ConfigError, DatasetConflict, InputError, MissingResource

SUMMARY = ".summary.json"
MIN_FREE_BYTES = 1 << 20  # a first shard, a checkpoint's config: refuse a disk with less before any work


class StageInputs(BaseModel):
    """Base of every stage's inputs. Fields made with :func:`input_path` are paths the stage
    reads (checked against the output, fingerprinted for the run's identity)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def input_paths(self) -> dict[str, str]:
        """``field -> path`` of every input path given (a list field gives ``field[i]`` entries)."""
        paths = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if not (field.json_schema_extra or {}).get("input_path") or not value:
                continue
            if isinstance(value, list):
                paths.update({f"{name}[{i}]": item for i, item in enumerate(value) if item})
            else:
                paths[name] = value
        return paths


def input_path(description: str, default: Any = ...) -> Any:
    """A field of :class:`StageInputs` holding a path or URI the stage reads."""
    return Field(default, description=description, json_schema_extra={"input_path": True})


class StageSummary(BaseModel):
    """What a stage did: typed fields per stage on top of these."""

    model_config = ConfigDict(extra="forbid")

    stage: str = ""
    out: str = ""
    seconds: float = 0.0
    reused: bool = Field(False, description="the output already held a finished run of the same identity")
    identity: str = ""

    def __getitem__(self, key: str):
        """``summary["rows"]`` reads like the JSON it is written as."""
        return getattr(self, key)

    def as_reused(self) -> StageSummary:
        """This finished run's summary as a re-run that reused it reports it: subclasses with
        "done this run" fields zero them here."""
        return self.model_copy(update={"reused": True})


class Stage:
    """A decorated stage function; call it like the function."""

    def __init__(self, func: Callable, name: str, inputs: type[StageInputs], summary: type[StageSummary],
                 sections: tuple[str, ...], reuse: bool):
        functools.update_wrapper(self, func)
        self.func, self.name, self.inputs_model, self.summary_model = func, name, inputs, summary
        self.sections, self.reuse = sections, reuse

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

    def identity(self, config: PipelineConfig, inputs: StageInputs) -> str:
        """A digest of everything that decides this stage's output."""
        from pipeline.data.shards import code_version

        record = {"stage": self.name, "config": config_record(config, self.sections),
                  "inputs": {name: value for name, value in inputs.model_dump(mode="json").items()
                             if not (type(inputs).model_fields[name].json_schema_extra or {}).get("input_path")},
                  "input_fingerprints": {name: fingerprint(path) for name, path in inputs.input_paths().items()},
                  "code_version": code_version()}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:20]

    def __call__(self, config, inputs, out) -> StageSummary:
        config, inputs = self.coerce(config, inputs)
        location = preflight_output(out, list(inputs.input_paths().values()))
        parse_device(config.run.device)
        identity = self.identity(config, inputs)
        started = time.perf_counter()
        with folder_lock(location):
            reuse = (self.reuse or config.run.resume) and not config.run.overwrite  # resuming a finished run: reuse
            previous = finished_summary(location, identity, self.summary_model) if reuse else None
            if previous is not None:
                return previous.as_reused().model_copy(update={"seconds": round(time.perf_counter() - started, 2)})
            summary = self.func(config, inputs, location)
            summary = summary.model_copy(update={"stage": self.name, "out": str(out), "identity": identity,
                                                 "seconds": round(time.perf_counter() - started, 2)})
            location.write_json(SUMMARY, summary.model_dump(mode="json"))
        return summary


def stage(name: str, inputs: type[StageInputs], summary: type[StageSummary], sections: tuple[str, ...], *,
          reuse: bool = True) -> Callable[[Callable], Stage]:
    """Make ``func(config, inputs, out: Location) -> summary`` a stage (module docstring).
    ``sections``: the config sections that shape its output (recorded, and part of its
    identity); ``reuse``: return a finished run's summary instead of running again (stages
    that refuse to continue a run unasked, the trainers, reuse only with ``run.resume``)."""
    return lambda func: Stage(func, name, inputs, summary, sections, reuse)


def fingerprint(path: str) -> str:
    """What an input holds, as far as it can be known cheaply: a dataset's content digest, a
    stage output's identity, else the resolved path (a raw dataset such as DexYCB)."""
    from pipeline.data.manifest import dataset_fingerprint

    location = Location.parse(path)
    try:
        if location.exists(".manifest.json") or location.exists("manifest.json"):
            return "dataset:" + dataset_fingerprint(location)
        if location.exists(SUMMARY):
            return "stage:" + json.loads(location.read_bytes(SUMMARY)).get("identity", "")
    except (InputError, OSError, json.JSONDecodeError):
        pass
    return "path:" + (location.path if location.is_local else location.text)


def finished_summary(location: Location, identity: str, model: type[StageSummary]) -> StageSummary | None:
    """The summary of a finished run of ``identity`` in the folder, if there is one."""
    if not location.exists(SUMMARY):
        return None
    try:
        payload = json.loads(location.read_bytes(SUMMARY))
        if payload.get("identity") != identity or not _intact(location):
            return None
        return model.model_validate(payload)
    except (ValueError, UnicodeDecodeError, OSError, AttributeError):
        return None


def _intact(location: Location) -> bool:
    """A dataset output's shards are all there with their recorded sizes (a cheap check; the
    checksums are ``data validate``'s job)."""
    from pipeline.data.shards import JOURNAL, MANIFEST

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


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def preflight_output(out, inputs: list[str] = (), free_bytes: int = MIN_FREE_BYTES) -> Location:
    """Check before any work that ``out`` can be written and is no input: a folder or
    creatable, writable, not equal to or inside an input, holding no input, with some free
    space. Local paths only (object stores answer when written). Returns its Location."""
    location = Location.parse(out)
    if not location.is_local:
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
        real_in = os.path.realpath(source_location.path)
        if _inside(real_out, real_in):
            raise DatasetConflict(f"is the input {source} or inside it; choose an output folder elsewhere", out)
        if _inside(real_in, real_out):
            raise DatasetConflict(f"holds the input {source}; choose an output folder elsewhere", out)
    free = shutil.disk_usage(existing).free
    if free < free_bytes:
        raise MissingResource(f"only {free >> 10} KiB free on the disk of {existing}; at least "
                              f"{free_bytes >> 20} MiB are needed", out)
    return location


def preflight_file(out, inputs: list[str] = ()) -> Path:
    """:func:`preflight_output` for a single output file: its folder can be made and written,
    it is not a folder itself, and it is no input."""
    path = Path(out)
    if path.is_dir():
        raise DatasetConflict("is a folder; expected an output file", out)
    for source in inputs:
        if _inside(os.path.realpath(path), os.path.realpath(source)):
            raise DatasetConflict(f"is the input {source} or inside it; choose another output file", out)
    preflight_output(path.parent, [])
    return path


def probe_writable(existing: Path, out) -> None:
    """``os.access`` says yes on some read-only mounts: create and remove a hidden file."""
    probe = existing / f".handbooster-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write the output folder: {existing}: {exc.strerror}", out) from None
