"""The committed dashboards are the builder's current output, and every panel reads real metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dashboards import GENERATED, iter_panels, pending, render_all
from flows import metrics

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\b(volcast_[a-z0-9_]+)")
# The label names volcast metrics may carry: each value set is fixed by configuration or code.
BOUNDED_LABELS = {
    "feed", "transport", "outcome", "instrument", "kind", "state", "underlying", "horizon", "method",
    "quantile", "tenor", "delta", "model", "sink", "le",
}


def exported_names() -> set[str]:
    """Every sample name volcast metrics can export (counters with _total, histograms' series)."""
    names = set()
    for name, (kind, _labels) in metrics.catalog().items():
        if kind == "counter":
            names.add(name + "_total")
        elif kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def test_the_committed_json_is_what_the_builder_generates_now():
    files = render_all()
    on_disk = {p.name: p.read_text() for p in GENERATED.glob("*.json")}
    assert set(on_disk) == set(files), "dashboards/generated holds exactly the generated dashboards"
    for name, text in files.items():
        assert on_disk[name] == text, f"{name} is stale: run python -m dashboards"


def test_python_m_dashboards_check_agrees():
    proc = subprocess.run([sys.executable, "-m", "dashboards", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", sorted(render_all()))
def test_panels_are_complete_and_read_defined_metrics(name):
    doc = json.loads(render_all()[name])
    panels = list(iter_panels(doc))
    assert panels and len({p["id"] for p in panels}) == len(panels)
    known = exported_names()
    for p in panels:
        assert p["title"] and p["description"], p
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["targets"], p["title"]
        for t in p["targets"]:
            for metric in METRIC.findall(t["expr"]):
                assert metric in known, f"{p['title']}: {metric} is not exported"


def test_every_volcast_metric_has_bounded_labels_and_is_documented():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name, (kind, labels) in metrics.catalog().items():
        assert set(labels) <= BOUNDED_LABELS, f"{name} has labels {labels}"
        shown = name + "_total" if kind == "counter" else name
        assert f"`{shown}" in doc, f"{shown} is not in docs/metrics.md"


def test_pending_panels_are_listed_with_a_reason():
    for uid, panels in pending().items():
        for title, why in panels:
            assert title and why, uid


def test_provisioning_files_point_grafana_at_the_generated_dashboards():
    prov = ROOT / "dashboards" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "volcast.yml").read_text())
    assert ds["apiVersion"] == 1 and ds["datasources"][0]["type"] == "prometheus"
    assert ds["datasources"][0]["url"].startswith("http://127.0.0.1:")
    dash = yaml.safe_load((prov / "dashboards" / "volcast.yml").read_text())
    provider = dash["providers"][0]
    assert dash["apiVersion"] == 1 and provider["type"] == "file" and provider["options"]["path"]
