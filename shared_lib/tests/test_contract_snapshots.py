"""Contracts change only on purpose.

`schemas/` is the committed snapshot of every payload schema: any change to a contract
fails here until the snapshot is rewritten (`python -m shared_lib.events.contracts
--write-schemas`) and the diff reviewed. `examples/` holds the payloads producers send
and consumers rely on: a change that would reject one of them breaks a consumer.
"""

import json

import pytest

from shared_lib.events.contracts import CONTRACTS, SCHEMA_DIR, Subject, json_schemas, validate_data

EXAMPLES_DIR = SCHEMA_DIR.parent / "examples"


@pytest.mark.parametrize("subject", list(Subject))
def test_the_contract_matches_its_committed_schema(subject):
    committed = json.loads((SCHEMA_DIR / f"{subject}.json").read_text())

    assert json_schemas()[str(subject)] == committed, (
        f"The {subject} contract changed. If that is intended, run "
        "`python -m shared_lib.events.contracts --write-schemas` and review what consumers break."
    )


def test_every_subject_has_a_contract_a_schema_and_examples():
    assert set(CONTRACTS) == set(Subject)
    assert {p.stem for p in SCHEMA_DIR.glob("*.json")} == {str(s) for s in Subject}
    assert {p.stem for p in EXAMPLES_DIR.glob("*.json")} == {str(s) for s in Subject}


@pytest.mark.parametrize("subject", list(Subject))
def test_every_example_a_consumer_relies_on_still_validates(subject):
    examples = json.loads((EXAMPLES_DIR / f"{subject}.json").read_text())
    assert examples

    for example in examples:
        payload = validate_data(subject, example)
        round_trip = payload.model_dump(mode="json")
        for field, value in example.items():
            assert round_trip[field] == value, f"{subject}.{field} does not survive a round trip"
