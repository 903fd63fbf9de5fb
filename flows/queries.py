"""The read-only commands: they write nothing, and print what they find (``--json``: as JSON).

Each query is a function ``(config, query) -> dict`` over a small pydantic model of its
arguments (fields marked ``argument`` are positional), and a function that turns its result
into lines of text. The command line is generated from :data:`QUERIES`, as it is for stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import PipelineConfig


def argument(description: str):
    return Field(description=description, json_schema_extra={"argument": True})


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArguments(Query):
    pass


class LibraryQuery(Query):
    objects: list[str] | None = Field(None, description="object names (default: the whole library)")


class ValidateQuery(Query):
    dataset: str = argument("a dataset folder or URI")
    deep: bool = Field(False, description="also decode every image and check its PNG mode and size")


class InspectQuery(Query):
    dataset: str = argument("a dataset folder or URI")


class RegistryQuery(Query):
    registry: str = Field("data_manifests", description="folder of registered manifests")


def info(config: PipelineConfig, query: NoArguments) -> dict:
    from flows.info import gather_info

    return gather_info(config)


def objects_list(config: PipelineConfig, query: LibraryQuery) -> dict:
    from pipeline.objects.commands import list_objects

    return list_objects(config.objects, query.objects)


def objects_text(result: dict) -> list[str]:
    lines = [f"{result['count']} objects in {result['library']}",
             f"{'name':24s} {'category':10s} {'extents (m)':24s} {'watertight':10s} {'faces':>6s}  sdf"]
    for obj in result["objects"]:
        extents = " x ".join(f"{e:.3f}" for e in obj["extents_m"])
        lines.append(f"{obj['name']:24s} {obj['category']:10s} {extents:24s} {obj['watertight']!s:10s} "
                     f"{obj['faces']:6d}  {obj['sdf']}")
    return lines


def data_validate(config: PipelineConfig, query: ValidateQuery) -> dict:
    """The report; a dataset with problems is an error listing every one (after the report is shown)."""
    from pipeline.data.manifest import validate_dataset

    return validate_dataset(query.dataset, deep=query.deep)


def validate_problems(result: dict) -> str | None:
    return f"{len(result['problems'])} problem(s): " + "; ".join(result["problems"]) if result["problems"] else None


def data_inspect(config: PipelineConfig, query: InspectQuery) -> dict:
    from pipeline.data.overview import inspect_dataset

    return inspect_dataset(query.dataset)


def inspect_text(result: dict) -> list[str]:
    lines = [f"{result['name']}: {result['rows']} rows in {result['shards']} shard(s), {result['kind']} records, "
             f"{result['image_size']} px"]
    lines += [f"  by {column}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
              for column, counts in result["counts"].items()]
    return lines


def data_list(config: PipelineConfig, query: RegistryQuery) -> dict:
    from pipeline.data.registry import list_registry

    return {"registry": query.registry, "entries": list_registry(query.registry)}


def list_text(result: dict) -> list[str]:
    lines = [f"{len(result['entries'])} registered dataset(s) in {result['registry']}"]
    for entry in result["entries"]:
        state = "valid" if entry["valid"] else "reachable, INVALID" if entry["reachable"] else "not reachable"
        lines.append(f"  {entry['name']:24s} {entry['rows']!s:>8s} rows  {state:18s} {entry['location']}  "
                     f"({entry['record']})")
        if entry["problems"] and entry["reachable"]:
            lines.append(f"      {entry['problems'][0]}")
    return lines


@dataclass(frozen=True)
class QueryEntry:
    function: object  # (config, query) -> dict
    model: type[Query]
    help: str
    flags: dict = field(default_factory=dict)  # flag -> dotted config key
    text: object = None  # result -> lines; None: "key: value" lines
    problems: object = None  # result -> an error line, or None


QUERIES = {
    "info": QueryEntry(info, NoArguments, "Versions, compute device, render platform and available hand models."),
    "objects list": QueryEntry(objects_list, LibraryQuery,
                               "Name, category, extents (m), watertightness and faces of every object.",
                               {"--library": "objects.library"}, objects_text),
    "data validate": QueryEntry(data_validate, ValidateQuery, "Re-check checksums, row counts, counts, schema and "
                                "leftovers of every shard; list every problem.", problems=validate_problems),
    "data inspect": QueryEntry(data_inspect, InspectQuery, "Counts by source, split, object and origin "
                               "('data sheet' draws a grid of samples).", text=inspect_text),
    "data list": QueryEntry(data_list, RegistryQuery, "What is registered, where it lives, and whether it is there "
                            "and valid.", text=list_text),
}
