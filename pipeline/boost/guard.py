"""The experiment's guard: no test sequence was seen by anything trained or sampled for it.

Within a protocol, the test splits must share no ``sequence_id`` with the real training data,
the synthesizer's training data, the filter's training data, or the synthetic rows (a row
derived from a real frame keeps that frame's sequence). Frames of one sequence are near
copies of each other, so a shared sequence is a seen test frame.
"""

from __future__ import annotations

from pipeline.errors import ConfigError


def sequences_of(where) -> set[str]:
    """The distinct ``sequence_id`` values of a dataset (rows without one are left out)."""
    from pipeline.data.manifest import read_columns

    _, table = read_columns(where, ["sequence_id"])
    return {s for s in table.column("sequence_id").to_pylist() if s}


def check_protocol(name: str, tests: list[str], seen: dict[str, list[str]]) -> dict:
    """Refuse (one line, before any training) a test that shares a sequence with what the
    protocol learned from; ``seen`` maps a role (``train``, ``synthesizer_train``,
    ``filter_train``, ``synthetic``) to its datasets. Returns the check's record."""
    from pipeline.data.manifest import dataset_name

    record = {"protocol": name, "tests": {}, "passed": True}
    learned = {role: [(where, sequences_of(where)) for where in datasets if where] for role, datasets in seen.items()}
    for test in tests:
        wanted = sequences_of(test)
        for role, datasets in learned.items():
            for where, sequences in datasets:
                shared = sorted(wanted & sequences)
                if shared:
                    raise ConfigError(
                        f"protocol {name}: the test split {dataset_name(test)} shares {len(shared)} sequence(s) with "
                        f"its {role.replace('_', ' ')} data {where} (e.g. {shared[0]}); score each test only with "
                        "models trained on its own protocol's training split", test)
        record["tests"][dataset_name(test)] = {"sequences": len(wanted), "checked_against": {
            role: [str(where) for where, _ in datasets] for role, datasets in learned.items()}}
    return record
