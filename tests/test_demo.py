"""Seeding the demo models into a real local server (the small examples; MiniLM is covered by its own test)."""

from __future__ import annotations

from modelbay.demo import seed


def test_seed_pushes_examples_with_production_and_is_idempotent(client):
    # the shared example cache: built once per machine, not once per test run
    done = seed(client, names=["mlp", "pii"])
    assert done == {"mlp": "version 1", "pii": "version 1"}
    models = {m.name: m for m in client.models()}
    assert models["pii"].aliases == {"production": 1}
    assert client.version("pii", "production").task == "classifier"
    again = seed(client, names=["mlp", "pii"])
    assert again == {"mlp": "present", "pii": "present"}
    out = client.predict("pii", "production", ["my card is 4111 1111 1111 1111", "lovely weather today"])
    assert len(out.predictions) == 2 and out.version == 1
