"""Images that do not match their labels: the check that the filter's reconstructor can tell a
wrong image from a right one. A filter that keeps wrong images about as often as right ones is
judging by chance; the boost experiment asks that it keep at most half as many."""

from __future__ import annotations

from pipeline.data import ShardWriter
from pipeline.data.reader import ShardDataset


def write_swapped(source, out, shift: int, whole_rows: bool = False) -> int:
    """The rows of ``source`` with every image moved ``shift`` rows on (so it shows another frame
    than its labels describe); ``whole_rows``: the rows themselves moved, each image still with its
    labels. Returns the rows written."""
    rows = ShardDataset(source, decode=False)
    raw = [rows.raw(i) for i in range(len(rows))]
    with ShardWriter(out, name="swapped", image_size=rows.manifest["image_size"]) as writer:
        for i, row in enumerate(raw):
            moved = raw[(i + shift) % len(raw)]
            writer.write(moved if whole_rows else {**row, "image": moved["image"], "sample_id": f"swapped/{i:04d}"})
    return len(raw)
