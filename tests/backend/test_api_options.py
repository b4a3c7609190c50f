"""GET /api/options: what the launch form is generated from; every preset is a valid config."""

from __future__ import annotations

from fastapi.testclient import TestClient

from marginscope.backend.store import RunStatus
from marginscope.engine.config import TrainConfig, field_specs
from marginscope.engine.events import COUNTER_KEYS, POPULATIONS, QUANTILE_KEYS
from marginscope.engine.selection import list_selectors

pytest_plugins = ["api_fixtures"]


def test_options_lists_the_engine_registries(client: TestClient) -> None:
    r = client.get("/api/options")
    assert r.status_code == 200
    opts = r.json()
    names = {d["name"] for d in opts["datasets"]}
    assert {"mnist", "digits", "imagefolder:<path>"} <= names
    assert next(d for d in opts["datasets"] if d["name"] == "digits")["available"] is True
    assert "small-cnn" in opts["models"] and "resnet20" in opts["models"]
    assert [s["name"] for s in opts["selectors"]] == list_selectors()
    assert all(s["help"] for s in opts["selectors"])
    assert {"normal", "aggressive"} <= set(opts["regimes"])
    assert [f["name"] for f in opts["fields"]] == [f["name"] for f in field_specs()]
    batch = next(f for f in opts["fields"] if f["name"] == "batch_size")
    assert batch["type"] == "integer" and batch["minimum"] == 1 and batch["default"] == 64


def test_presets_are_valid_and_include_mms_vs_uniform(client: TestClient) -> None:
    presets = client.get("/api/options").json()["presets"]
    for preset in presets:
        assert preset["runs"] and preset["help"]
        for run in preset["runs"]:
            TrainConfig(**run["config"])  # raises if a preset drifted from the config rules
    mvu = next(p for p in presets if p["name"] == "MMS vs uniform")
    configs = [r["config"] for r in mvu["runs"]]
    assert sorted(c["selector"] for c in configs) == ["mms", "uniform"]
    assert {c["dataset"] for c in configs} == {"mnist"} and len({c["seed"] for c in configs}) == 1


def test_a_preset_launches_through_the_api(client: TestClient) -> None:
    preset = client.get("/api/options").json()["presets"][0]
    for run in preset["runs"]:
        r = client.post("/api/runs", json={"name": run["name"], "config": run["config"]})
        assert r.status_code == 201 and r.json()["status"] == "queued"


def test_vocabulary_is_the_engines(client: TestClient) -> None:
    """The pages take counters, x axes, populations, quantile keys and statuses from here."""
    vocabulary = client.get("/api/options").json()["vocabulary"]
    assert vocabulary == {"counters": list(COUNTER_KEYS), "x_axes": list(COUNTER_KEYS),
                          "populations": list(POPULATIONS), "quantiles": list(QUANTILE_KEYS),
                          "statuses": [s.value for s in RunStatus]}
    assert "samples_backpropagated" in vocabulary["x_axes"] and "p50" in vocabulary["quantiles"]
