"""A real Prometheus scrapes ``volcast demo``; every panel query of every shipped dashboard returns data.

Everything listens on 127.0.0.1 on free ports: the demo's replay server and metrics
endpoint, and Prometheus (``--web.listen-address``, storage in a tmp folder,
1 s scrapes, the shipped alert rules loaded). When the demo has run through the
bundled recordings, each panel's PromQL is evaluated through the HTTP API at the
time of the last successful scrape, with the dashboard variables resolved the way
Grafana resolves them (``label_values`` through the series API).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import iter_panels, render_all
from flows import metrics

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "dashboards" / "prometheus"
pytestmark = pytest.mark.slow

# What the demo configures: every label value must come from this (bounded) set.
EXPECTED_VALUES = {
    "feed": {"binance", "binance_usdm", "deribit"},
    # Book instruments by name; an option chain's tickers summed under deribit:*.
    "instrument": {f"{f}:{s}" for f in ("binance", "binance_usdm") for s in ("BTCUSDT", "ETHUSDT")} | {"deribit:*"},
    "underlying": {"BTC", "ETH", "BTC2020"},  # BTC2020: the demo's 2020 Deribit chain (surface only)
    "tenor": {"1d", "7d", "14d", "30d", "60d", "90d", "180d"},
    "delta": {"10P", "25P", "ATM", "25C", "10C"},
    "horizon": {"5m", "15m", "1h", "4h"},
    "method": {"ewma", "har_rv", "garch", "ar1"},
    "state": {"disconnected", "buffering", "synced", "resyncing", "error"},
    "transport": {"websocket", "rest"},
    "outcome": {"ok", "failed"},
    "quantile": {"0.1", "0.5", "0.9"},
    "model": {"attention"},
}


def binary(name: str) -> str:
    """Path of ``name``; skipped when missing on a developer's machine, a failure under CI.

    ``make test-deps`` installs Debian's ``prometheus`` package, which brings ``promtool``.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: `make test-deps` installs Debian's prometheus package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: Any) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr, time=at)["result"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False


def resolve_variables(doc: dict[str, Any], api: PromAPI, at: float) -> dict[str, str]:
    """Values of the dashboard's variables as Grafana would pick them (saved current, else the first)."""
    values: dict[str, str] = {}
    for var in doc["templating"]["list"]:
        if var["type"] == "datasource":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
        assert m, var["query"]
        selector, label = substitute(m.group(1), values), m.group(2)
        series = api.get("/api/v1/series", **{"match[]": selector, "start": at - 300, "end": at})
        options = sorted({s[label] for s in series if label in s})
        assert options, f"variable {var['name']}: {var['query']} has no values"
        current = var.get("current", {}).get("value")
        if current == "$__all":
            values[var["name"]] = var.get("allValue") or "|".join(options)
        else:
            values[var["name"]] = current if current in options else options[0]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "1m")
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


@pytest.fixture(scope="module")
def scraped_demo(tmp_path_factory):
    """Run the demo under a real Prometheus; yield (api, time of the last successful scrape)."""
    prometheus_path = binary("prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    metrics_port, prom_port = free_port(), free_port()
    # The shipped example config, with 1 s scrapes of this demo's port and the rules by absolute path.
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(PROM_DIR / "alerts.yml")]
    cfg["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{metrics_port}"]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    prom_log, demo_log = (tmp / "prometheus.log").open("w"), (tmp / "demo.log").open("w")
    prom = subprocess.Popen(
        [prometheus_path, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=prom_log, stderr=subprocess.STDOUT,
    )
    api = PromAPI(prom_port)
    demo = None
    try:
        deadline = time.monotonic() + 30
        while not api.ready():
            assert prom.poll() is None and time.monotonic() < deadline, (tmp / "prometheus.log").read_text()
            time.sleep(0.2)
        started = time.time()
        demo = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "demo", "--speed", "0", "--quiet", "--duration", "75",
             "--metrics-port", str(metrics_port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=demo_log,
        )
        assert demo.wait(timeout=90) == 0, (tmp / "demo.log").read_text()[-3000:]
        time.sleep(1.5)  # one more scrape interval: the failed scrape records up == 0
        up = api.get("/api/v1/query_range", query='up{job="volcast"}', start=started, end=time.time(), step=0.5)
        assert up["result"], "Prometheus never scraped the demo"
        last_up = max(float(t) for t, v in up["result"][0]["values"] if v == "1")
        yield api, last_up
    finally:
        for proc in (demo, prom):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        prom_log.close()
        demo_log.close()


def shipped_targets() -> list[tuple[str, str, str, dict[str, Any]]]:
    out = []
    for name, text in sorted(render_all().items()):
        doc = json.loads(text)
        for panel in iter_panels(doc):
            for target in panel["targets"]:
                out.append((name, panel["title"], target["expr"], doc))
    return out


def test_every_panel_query_of_every_dashboard_returns_data(scraped_demo):
    api, at = scraped_demo
    empty = []
    checked = 0
    for name, title, expr, doc in shipped_targets():
        resolved = substitute(expr, resolve_variables(doc, api, at))
        result = api.query(resolved, at)
        values = [float(r["value"][1]) for r in result]
        if not result or not any(math.isfinite(v) for v in values):
            empty.append(f"{name} / {title}: {resolved} -> {result}")
        checked += 1
    assert checked >= 30
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_pending_panel_queries_are_valid_promql(scraped_demo):
    api, at = scraped_demo
    for name, text in render_all(include_pending=True).items():
        doc = json.loads(text)
        values = resolve_variables(doc, api, at)
        for panel in iter_panels(doc):
            for target in panel["targets"]:
                api.query(substitute(target["expr"], values), at)  # raises on a parse error


def test_labels_are_bounded_by_the_configuration(scraped_demo):
    api, at = scraped_demo
    series = api.get("/api/v1/series", **{"match[]": '{__name__=~"volcast_.+"}', "start": at - 5, "end": at})
    assert len(series) < 2000
    catalog = metrics.catalog()
    for s in series:
        base = re.sub(r"_(total|bucket|sum|count)$", "", s["__name__"])
        family = s["__name__"] if s["__name__"] in catalog else base
        assert family in catalog, s
        labels = set(s) - {"__name__", "job", "instance", "le"}
        assert labels == set(catalog[family][1]) - {"le"}, s
        for label in labels - {"kind", "sink"}:  # event kinds: fixed by code; sinks: by --out etc.
            assert s[label] in EXPECTED_VALUES[label], s
    # Every family with data today appears; the model's batches do not (no window in minutes of data).
    names = {re.sub(r"_(total|bucket|sum|count)$", "", s["__name__"]) for s in series}
    assert {"volcast_forecast_qlike", "volcast_feed_last_message_age_seconds", "volcast_surface_iv"} <= names
    assert "volcast_model_batch_duration_seconds" not in names


def test_alert_rules_evaluate_cleanly_on_real_data(scraped_demo):
    api, _at = scraped_demo
    groups = api.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 6
    for rule in rules:
        assert rule["health"] == "ok", rule
