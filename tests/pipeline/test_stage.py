"""The stage framework: one shape for every stage, its identity, reuse and refusals."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, DatasetConflict, InputError
from pipeline.stage import ReportSummary, StageInputs, input_path, resolved_device, stage

from conftest import make_config

CALLS = []


class EchoInputs(StageInputs):
    source: str | None = input_path("a file the stage reads", None)
    words: int = Field(1, ge=1, description="how many words to write")


@stage("echo", EchoInputs, ReportSummary, ("grasp.iterations",))
def echo(config: PipelineConfig, inputs: EchoInputs, out) -> ReportSummary:
    """Write words (and fail on demand, after beginning its output)."""
    CALLS.append(inputs.words)
    out.write_atomic("words.txt", (" ".join(["word"] * inputs.words)).encode())
    if inputs.words == 13:
        raise InputError("unlucky number", "words")
    return ReportSummary(files={"words": out.join("words.txt")}, details={"words": inputs.words})


def test_a_finished_run_of_the_same_identity_is_reused_and_a_change_says_why(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("a")
    config, inputs = make_config(), {"source": str(source), "words": 2}
    CALLS.clear()
    first = echo(config, inputs, tmp_path / "out")
    again = echo(config, inputs, tmp_path / "out")
    assert CALLS == [2] and again.reused and again.identity == first.identity
    assert json.loads((tmp_path / "out" / ".summary.json").read_text())["details"] == {"words": 2}
    source.write_text("b")  # the input's content, not its path, is part of the identity
    changed = echo(config, inputs, tmp_path / "out")
    assert not changed.reused and changed.rerun_because == "input source changed"
    other = echo(make_config({"grasp.iterations": 7}), inputs, tmp_path / "out")
    assert other.rerun_because == "settings changed" and CALLS == [2, 2, 2]
    unread = echo(make_config({"grasp.iterations": 7, "synthesis.max_steps": 3}), inputs, tmp_path / "out")
    assert unread.reused, "a section the stage does not read is not part of its identity"
    (tmp_path / "out" / "words.txt").unlink()  # a file the summary lists is gone: the run is done again
    assert not echo(make_config({"grasp.iterations": 7}), inputs, tmp_path / "out").reused
    assert (tmp_path / "out" / "words.txt").exists()


@stage("echo_anywhere", EchoInputs, ReportSummary, (), uri_out=True)
def echo_anywhere(config: PipelineConfig, inputs: EchoInputs, out) -> ReportSummary:
    """Write one file through the output's filesystem, whatever it is."""
    out.write_atomic("words.txt", b"word")
    return ReportSummary(files={"words": out.address("words.txt")})


def test_a_stage_writing_through_its_location_takes_any_filesystem(tmp_path):
    """A filesystem other than the local one (an object store, here a sub-tree of this disk) gets
    the files and the summary; the files are named as the user typed the folder, with a URI's
    query (an S3 endpoint) kept at its end."""
    import pyarrow.fs as pafs

    from pipeline.storage import Location

    (tmp_path / "store").mkdir()
    elsewhere = Location(pafs.SubTreeFileSystem(str(tmp_path / "store"), pafs.LocalFileSystem()), "run", "tree://run")
    assert not elsewhere.is_local
    summary = echo_anywhere(make_config(), {}, elsewhere)
    assert (tmp_path / "store" / "run" / "words.txt").read_bytes() == b"word"
    assert json.loads((tmp_path / "store" / "run" / ".summary.json").read_text())["out"] == "tree://run"
    assert summary.files == {"words": "tree://run/words.txt"}
    s3 = Location.parse("s3://bucket/run?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http")  # no network
    assert s3.child("kept").text == "s3://bucket/run/kept?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http"
    assert s3.child("kept").path == "bucket/run/kept" and s3.address("a.png").startswith("s3://bucket/run/a.png?")
    CALLS.clear()
    with pytest.raises(InputError, match="echo writes its files with local file APIs"):  # not uri_out
        echo(make_config(), {}, s3)
    assert CALLS == []
    # An output that is an input, lies inside one or holds one is refused on object stores too (with
    # overwrite, a dataset merged into itself lost its manifest), whatever the URIs' queries say.
    for out in (s3.text, "s3://bucket/run/inner?region=us-east-1", "s3://bucket?region=us-east-1"):
        with pytest.raises(DatasetConflict, match="input s3://bucket/run/[ ;]"):
            echo_anywhere(make_config(), {"source": "s3://bucket/run/"}, out)


def test_inputs_from_json_are_validated_with_the_field_named(tmp_path):
    with pytest.raises(ConfigError, match="'words'"):
        echo(make_config(), {"words": 0}, tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        echo(make_config(), {"colour": "red"}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_output_inside_an_input_is_refused_before_any_work(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    CALLS.clear()
    with pytest.raises(DatasetConflict, match="is the input"):
        echo(make_config(), {"source": str(source)}, source / "out")
    assert CALLS == []


def test_a_run_failing_on_bad_input_leaves_no_half_output(tmp_path):
    with pytest.raises(InputError, match="unlucky"):
        echo(make_config(), {"words": 13}, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_the_device_is_resolved_once_for_the_stage(monkeypatch):
    import torch

    assert resolved_device(make_config({"run.device": "cpu"})).run.device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolved_device(make_config({"run.device": "auto"})).run.device == "cpu"
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolved_device(make_config({"run.device": "cuda"}))
