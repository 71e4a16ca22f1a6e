"""The shipped Prometheus config and alert rules pass promtool: check config, check rules, test rules."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM = Path(__file__).resolve().parents[2] / "dashboards" / "prometheus"


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


@pytest.fixture
def promtool():
    path = binary("promtool")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([path, *args], cwd=PROM, capture_output=True, text=True, timeout=60)

    return run


def test_example_config_passes_promtool_check_config(promtool):
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    for target in cfg["scrape_configs"][0]["static_configs"][0]["targets"]:
        assert target.startswith("127.0.0.1:")  # the daemon's metrics bind loopback by default


def test_alert_rules_pass_promtool_check_rules(promtool):
    proc = promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_pass_their_unit_tests_with_firing_and_quiet_cases(promtool):
    proc = promtool("test", "rules", "alerts_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every alert has a test where it fires and one where it stays quiet.
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts == fired == quiet
