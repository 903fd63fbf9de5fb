"""The dataset registry (``data_manifests/``): validated copies of manifests, versioned like code.

A record is ``<registry>/<name>.json``: the dataset's manifest plus ``location``, where the
folder lives, as a path relative to the registry folder or a URI (never one machine's
absolute path, so a clone of the repository can resolve it). A collection (the demo's four
splits) holds a record per split under ``splits``. Registering the same name again with the
same location replaces the record (the dataset was re-made there); another location is a
conflict unless ``overwrite``. ``list_registry`` says which records resolve to a dataset
that is there and valid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.data.manifest import read_manifest, validate_dataset
from pipeline.errors import BadData, DatasetConflict, InputError
from pipeline.paths import atomic_write_bytes
from pipeline.storage import Location, is_uri

DEFAULT_REGISTRY = "data_manifests"


def registry_record(where) -> dict:
    """Validate the dataset; its manifest plus where it lives (absolute until written)."""
    report = validate_dataset(where)
    if report["problems"]:
        raise BadData(f"not registered: {len(report['problems'])} problem(s): " + "; ".join(report["problems"]),
                      where)
    location, manifest = read_manifest(where)
    manifest = {key: value for key, value in manifest.items() if key != "identity"}
    return {**manifest, "location": location.text if not location.is_local else location.path}


def _relative_locations(record, registry: Path):
    """Every ``location`` of a record made relative to the registry folder (URIs kept)."""
    if isinstance(record, dict):
        out = {key: _relative_locations(value, registry) for key, value in record.items()}
        location = record.get("location")
        if isinstance(location, str) and not is_uri(location):
            out["location"] = os.path.relpath(location, registry.resolve()).replace(os.sep, "/")
        return out
    return record


def resolve_location(text: str, registry: Path) -> str:
    """A record's location as a path or URI usable from here."""
    return text if is_uri(text) else str((registry / text).resolve())


def _locations(record: dict, registry: Path) -> list[str]:
    if "splits" in record:
        return sorted(resolve_location(split["location"], registry) for split in record["splits"].values())
    return [resolve_location(record["location"], registry)] if "location" in record else []


def registry_target(name: str, out, registry: str | Path, overwrite: bool = False) -> Path:
    """Where ``name`` will be registered, checked before any work: the registry can be written,
    and no record of that name points somewhere other than ``out`` (unless ``overwrite``)."""
    from pipeline.stage import preflight_output

    registry = Path(registry)
    preflight_output(registry)
    path = registry / f"{name}.json"
    if path.exists() and not overwrite:
        existing = _read_record(path)
        here = os.path.realpath(Location.parse(out).path)
        elsewhere = [loc for loc in _locations(existing, registry) if not os.path.realpath(loc).startswith(here)]
        if elsewhere:
            raise DatasetConflict(f"already registers '{name}' at {elsewhere[0]}; pass overwrite=True to register "
                                  f"{out} instead, or use another registry folder", path)
    return path


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadData("not a valid registry record (JSON)", path) from None
    if not isinstance(record, dict) or "name" not in record:
        raise BadData("not a registry record: expected a JSON object with a 'name'", path)
    return record


def write_registry_record(record: dict, registry: str | Path = DEFAULT_REGISTRY, overwrite: bool = False) -> Path:
    """``registry/<name>.json`` with relative locations; a record of the same name pointing
    elsewhere is kept unless ``overwrite``."""
    registry = Path(registry)
    path = registry / f"{record['name']}.json"
    relative = _relative_locations(record, registry)
    if path.exists() and not overwrite:
        existing = _read_record(path)
        if _locations(existing, registry) != _locations(relative, registry):
            raise DatasetConflict(f"a different dataset (at another location) is registered as '{record['name']}'; "
                                  "pass overwrite=True to replace the record", path)
    atomic_write_bytes(path, (json.dumps(relative, indent=2, sort_keys=True) + "\n").encode())
    return path


def register_dataset(where, registry: str | Path = DEFAULT_REGISTRY, overwrite: bool = False) -> dict:
    """Validate the dataset, then copy its manifest (plus where it lives) to ``registry/<name>.json``."""
    record = registry_record(where)
    path = write_registry_record(record, registry, overwrite)
    return {"registered": str(path), "name": record["name"], "rows": record["rows"],
            "location": json.loads(path.read_text())["location"]}


def list_registry(registry: str | Path = DEFAULT_REGISTRY) -> list[dict]:
    """Every record: name, kind, rows, location, and whether it resolves to a valid dataset."""
    registry = Path(registry)
    if not registry.is_dir():
        raise InputError("no such registry folder", registry)
    entries = []
    for path in sorted(p for p in registry.glob("*.json") if not p.name.startswith(".")):
        record = _read_record(path)
        parts = record["splits"] if "splits" in record else {record["name"]: record}
        for part_name, part in parts.items():
            location = resolve_location(part.get("location", ""), registry)
            entry = {"record": path.name, "name": part.get("name", part_name), "kind": part.get("kind"),
                     "rows": part.get("rows"), "location": part.get("location")}
            try:
                report = validate_dataset(location)
                _, manifest = read_manifest(location)
                same = [s["sha256"] for s in manifest["shards"]] == [s["sha256"] for s in part.get("shards", [])]
                entry.update(reachable=True, valid=report["ok"] and same,
                             problems=report["problems"] + ([] if same else ["differs from the registered record"]))
            except (InputError, OSError) as exc:
                entry.update(reachable=False, valid=False, problems=[str(exc)])
            entries.append(entry)
    return entries


def migrate_dataset(where) -> dict:
    """Rename a handbooster 0.1 folder's ``manifest.json`` (and sampling report) to the layout
    every Arrow tool opens; the shards are not touched."""
    from pipeline.storage import LEGACY_MANIFEST, MANIFEST, REPORT_DIR

    location = Location.parse(where)
    if not location.exists(LEGACY_MANIFEST):
        read_manifest(location)
        return {"dataset": str(location), "migrated": []}
    moved = []
    for old, new in ((LEGACY_MANIFEST, MANIFEST), ("sampling_report.json", f"{REPORT_DIR}/sampling_report.json"),
                     ("similarity.png", f"{REPORT_DIR}/similarity.png")):
        if location.exists(old):
            location.write_atomic(new, location.read_bytes(old))
            location.delete(old)
            moved.append(f"{old} -> {new}")
    read_manifest(location)
    return {"dataset": str(location), "migrated": moved}
