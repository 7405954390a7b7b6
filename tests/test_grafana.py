"""docs/grafana-dashboard.json: valid, over the metrics /metrics serves, and every rate of
a counter summed across replicas (a per-replica rate is no fleet figure)."""

from __future__ import annotations

import json
import re

from gateway.ledger import Record
from gateway.metrics import Metrics
from tools.processes import REPO

AGGREGATED = re.compile(r"(?:sum|max)(?: by \([^)]*\))? ?\((?:rate|increase)\(")


def served_families() -> set[str]:
    metrics = Metrics()
    for status, tier in (("HIT", "exact"), ("MISS", None), ("REPORTED", "semantic")):
        metrics.observe(
            Record(
                0,
                "t",
                "default",
                "chat",
                "m",
                status,
                tier,
                None,
                1,
                1,
                0.1,
                1,
                1.0,
                1.0,
                1,
                200,
                "k",
                None,
            )
        )
    text = metrics.render().decode()
    return {family(name) for name in re.findall(r"^# TYPE (\w+) ", text, re.M)}


def family(name: str) -> str:
    """A sample's or a TYPE line's name, without the suffixes of counters and histograms."""
    return re.sub(r"_(total|bucket|sum|count)$", "", name)


def test_the_grafana_dashboard_reads_served_metrics_summed_over_replicas():
    dashboard = json.loads((REPO / "docs/grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert len(panels) >= 15 and all(p["targets"] for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    families = served_families()
    used = {family(name) for expr in exprs for name in re.findall(r"cachegate_\w+", expr)}
    assert used - families == set(), "metrics /metrics does not serve"
    for needed in (
        "cachegate_requests",
        "cachegate_usd_saved",
        "cachegate_request_seconds",
        "cachegate_tokens_saved",
        "cachegate_reported_bad",
        "cachegate_entries",
    ):
        assert needed in used, needed
    for expr in exprs:
        rates = len(re.findall(r"\b(?:rate|increase)\(", expr))
        assert len(AGGREGATED.findall(expr)) == rates, f"a rate not summed: {expr}"
        assert re.match(r"(sum|max|histogram_quantile)\b", expr), expr
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "instance"}
