"""Grafana dashboards of volcast, generated from code with grafana-foundation-sdk.

``python -m dashboards`` writes ``dashboards/generated/<uid>.json``, the files that
are committed and that Grafana's provisioning loads (``dashboards/provisioning``);
``python -m dashboards --check`` fails if they are not current. Panel definitions
live in :mod:`dashboards.volatility` and :mod:`dashboards.pipeline`; docs/metrics.md
describes the metrics, the alert rules and how to load everything into Grafana.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

GENERATED = Path(__file__).resolve().parent / "generated"


def builders() -> dict[str, Callable[..., Any]]:
    """Dashboard uid -> ``build(include_pending=False)`` (imports the SDK only when called)."""
    from dashboards import pipeline, volatility

    return {volatility.UID: volatility.build, pipeline.UID: pipeline.build}


def pending() -> dict[str, list[tuple[str, str]]]:
    """Dashboard uid -> the (panel title, reason) of each panel not shipped yet."""
    from dashboards import pipeline, volatility

    return {m.UID: [(title, why) for title, why, _make in m.PENDING] for m in (volatility, pipeline)}


def render_all(include_pending: bool = False) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    from dashboards.common import render

    return {f"{uid}.json": render(build(include_pending)) for uid, build in builders().items()}


def iter_panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every non-row panel of a dashboard JSON model, rows' nested panels included."""
    for panel in doc.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel
