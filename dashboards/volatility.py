"""The "Volatility" dashboard: forecasts against realized volatility, and online scores.

Shipped panels read metrics that have values today (``volcast demo`` fills every
one of them; ``tests/dashboards/test_prometheus.py`` proves it against a real
Prometheus). :data:`PENDING` holds the panels whose metrics are defined in
``flows/metrics.py`` but get values only when their feature lands or after
longer than the bundled recordings last; ``build(include_pending=True)`` adds
them, to preview or to ship once their data exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.models.dashboard import DataTransformerConfig
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards.common import (
    Panels,
    bars,
    datasource_variable,
    framed,
    label_variable,
    new_dashboard,
    query,
    ts,
    with_sections,
)

UID = "volcast-volatility"
U = 'underlying="$underlying"'
UH = 'underlying="$underlying", horizon="$horizon"'
C = 'underlying="$chain"'  # the option-chain underlying of the surface panels


def _forecasts(ids: Panels) -> list[Any]:
    return [
        ts(
            ids,
            "RV forecast by method vs realized ($underlying, $horizon)",
            "Each method's latest forecast of the volatility over the next $horizon, and the volatility "
            "realized over the trailing $horizon. The realized line at time t is what the forecasts made "
            "at t - $horizon were aiming at. Annualized (365-day year).",
            "percentunit",
            [
                query(f"volcast_forecast_vol{{{UH}}}", "{{method}} forecast"),
                query(f"volcast_realized_vol{{{UH}}}", "realized (trailing $horizon)"),
            ],
            w=16,
            h=9,
        ),
        bars(
            ids,
            "Forecast term structure ($underlying)",
            "Latest forecast of each method at every horizon, annualized. A flat EWMA term structure is "
            "by design (square-root-of-time rule).",
            "percentunit",
            [query(f"volcast_forecast_vol{{{U}}}", "{{method}} {{horizon}}", instant=True)],
            w=8,
            h=9,
        ),
        ts(
            ids,
            "Realized volatility by horizon ($underlying)",
            "Volatility realized over each trailing horizon from squared 1-step mid log returns, shown once "
            "at least 80% of the window's steps were observed (synced book).",
            "percentunit",
            [query(f"volcast_realized_vol{{{U}}}", "trailing {{horizon}}")],
            w=24,
            h=7,
        ),
    ]


def _scores(ids: Panels) -> list[Any]:
    return [
        ts(
            ids,
            "QLIKE by method ($underlying, $horizon): model vs baselines",
            "Mean QLIKE loss of each method's forecasts scored once their horizon elapsed, over the rolling "
            "score window (24 h). Lower is better; 0 is perfect. Methods are scored on the same timestamps, "
            "so the lines compare directly.",
            "none",
            [query(f"volcast_forecast_qlike{{{UH}}}", "{{method}}")],
            w=12,
            h=8,
            min_val=0,
        ),
        bars(
            ids,
            "QLIKE by method and horizon ($underlying)",
            "Latest rolling QLIKE of every method and horizon that has scored forecasts.",
            "none",
            [query(f"volcast_forecast_qlike{{{U}}}", "{{method}} {{horizon}}", instant=True)],
            w=12,
            h=8,
        ),
        ts(
            ids,
            "Forecasts scored per minute ($underlying)",
            "Matured forecasts scored, and those that could not be (fewer than 80% of their window's steps "
            "observed, or no price move). Forecasts are sampled every 10 s for scoring.",
            "short",
            [
                query(
                    f"sum by (method, horizon) (rate(volcast_forecast_scored_total{{{U}}}[$__rate_interval])) * 60",
                    "{{method}} {{horizon}} scored",
                ),
                query(
                    f"sum by (method, horizon) (rate(volcast_forecast_unscorable_total{{{U}}}[$__rate_interval])) * 60",
                    "{{method}} {{horizon}} unscorable",
                ),
            ],
            w=12,
            h=8,
            min_val=0,
        ),
        bars(
            ids,
            "Forecasts in the score window ($underlying)",
            "How many matured forecasts each rolling QLIKE averages; few means a noisy score.",
            "short",
            [query(f"volcast_forecast_score_samples{{{U}}}", "{{method}} {{horizon}}", instant=True)],
            w=12,
            h=8,
        ),
    ]


def _surface_matrix(ids: Panels) -> Any:
    p = (
        framed(
            table.Panel(),
            ids,
            "IV surface, tenor x delta ($chain)",
            "Implied vol of the fitted arbitrage-free SVI surface on the tenor x delta grid (forward "
            "Black-76 deltas, ATM = forward; tenors only where the chain reaches).",
            w=12,
            h=9,
        )
        .unit("percentunit")
        .with_target(
            query(f"volcast_surface_iv{{{C}}}", instant=True).format(PromQueryFormat.TABLE).ref_id("A")
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="groupingToMatrix",
                options={"columnField": "delta", "rowField": "tenor", "valueField": "Value"},
            )
        )
    )
    return p


def _surface(ids: Panels) -> list[Any]:
    return [
        _surface_matrix(ids),
        bars(
            ids,
            "ATM IV term structure ($chain)",
            "At-the-money (forward) implied vol per tenor of the fitted surface.",
            "percentunit",
            [query(f"volcast_surface_atm_iv{{{C}}}", "{{tenor}}", instant=True)],
            w=12,
            h=9,
        ),
        ts(
            ids,
            "25-delta risk reversal and butterfly ($chain)",
            "RR25 = 25-delta call IV - 25-delta put IV; BF25 = (call IV + put IV) / 2 - ATM IV, per tenor.",
            "percentunit",
            [
                query(f"volcast_surface_rr25{{{C}}}", "RR25 {{tenor}}"),
                query(f"volcast_surface_bf25{{{C}}}", "BF25 {{tenor}}"),
            ],
            w=12,
            h=8,
        ),
        ts(
            ids,
            "Surface fit RMSE vs mark IV ($chain)",
            "Root-mean-square error of the fitted surface against the quoted mark IVs (decimal IV: 0.01 is "
            "one vol point).",
            "percentunit",
            [query(f"volcast_surface_fit_rmse_iv{{{C}}}", "RMSE")],
            w=12,
            h=8,
            min_val=0,
        ),
        ts(
            ids,
            "ATM IV, RR25 and BF25 forecasts ($chain, $horizon)",
            "Forecast ATM implied vol, 25-delta risk reversal and butterfly per tenor at the $horizon "
            "horizon; method ar1 (a mean-reverting AR(1) per series) until a checkpoint has surface heads.",
            "percentunit",
            [
                query(f'volcast_forecast_atm_iv{{{C}, horizon="$horizon"}}', "ATM {{tenor}} {{method}}"),
                query(f'volcast_forecast_rr25{{{C}, horizon="$horizon"}}', "RR25 {{tenor}} {{method}}"),
                query(f'volcast_forecast_bf25{{{C}, horizon="$horizon"}}', "BF25 {{tenor}} {{method}}"),
            ],
            w=24,
            h=8,
        ),
    ]


# (title, why it is not shipped yet, panel factory)
PENDING: list[tuple[str, str, Callable[[Panels], Any]]] = [
    (
        "RV forecast quantile band",
        "quantiles need 20 non-overlapping horizons of scored forecasts (100 min for 5m); the bundled "
        "11-minute recordings cannot produce them",
        lambda ids: ts(
            ids,
            "RV forecast q10-q90 band ($underlying, $horizon)",
            "Each method's q10, q50 and q90 of the realized vol over the next $horizon, with realized.",
            "percentunit",
            [
                query(f"volcast_forecast_vol_quantile{{{UH}}}", "{{method}} q{{quantile}}"),
                query(f"volcast_realized_vol{{{UH}}}", "realized (trailing $horizon)"),
            ],
            w=24,
        ),
    ),
    (
        "q10-q90 coverage",
        "as above: no forecast carries quantiles within the demo",
        lambda ids: ts(
            ids,
            "q10-q90 coverage ($underlying)",
            "Share of realized vols inside the forecast's own q10-q90 band; 0.8 is calibrated.",
            "percentunit",
            [query(f"volcast_forecast_coverage_q10_q90{{{U}}}", "{{method}} {{horizon}}")],
        ),
    ),
    (
        "QLIKE relative to EWMA",
        "needs a second scored method: HAR-RV and the attention model need 4 h of history, more than the "
        "bundled recordings hold",
        lambda ids: ts(
            ids,
            "QLIKE relative to the EWMA baseline ($underlying, $horizon)",
            "Rolling QLIKE of each method divided by EWMA's; below 1 beats the naive baseline.",
            "none",
            [
                query(
                    f'volcast_forecast_qlike{{{UH}, method!="ewma"}} / ignoring(method) group_left '
                    f'volcast_forecast_qlike{{{UH}, method="ewma"}}',
                    "{{method}} / ewma",
                )
            ],
        ),
    ),
]


def build(include_pending: bool = False) -> Dashboard:
    ids = Panels()
    dash = (
        new_dashboard(
            UID,
            "volcast: Volatility",
            "Realized-volatility forecasts of every method against realized volatility, and their online "
            "scores. Generated by `python -m dashboards`; edit dashboards/volatility.py, not this JSON.",
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("underlying", "Underlying", "volcast_forecast_vol", current="BTC"))
        .with_variable(
            label_variable("horizon", "Horizon", 'volcast_forecast_vol{underlying="$underlying"}', current="5m")
        )
        .with_variable(
            label_variable("chain", "Option chain", "volcast_surface_atm_iv", current="BTC", of_label="underlying")
        )
    )
    sections = [
        ("Realized volatility forecasts", _forecasts),
        ("Online scores (rolling 24 h)", _scores),
        ("Implied-volatility surface (live nowcast)", _surface),
    ]
    return with_sections(dash, ids, sections, PENDING, include_pending)
