#!/usr/bin/env python3
"""Writes every query of the Grafana dashboard as a Prometheus recording rule, with Grafana's
variables replaced by sample values, so that `promtool check rules` parses each one as PromQL.
It also fails when a query uses a metric that neither the operator (docs/contracts.md) nor the
predictor (predictor/src/metrics.rs) exports.

Usage: dashboard_queries.py DASHBOARD.json OUT_RULES.yaml
"""

import json
import pathlib
import re
import sys

import yaml

VARIABLES = {
    "$__rate_interval": "2m",
    "${datasource}": "prometheus",
    "$namespace": "shop",
    "$model": "movies|books",
    "$job": "recommender-operator",
}
# The operator's metrics as docs/contracts.md names them, and the predictor's as
# predictor/src/metrics.rs registers them (prefix recommender_predictor_).
KNOWN = {
    "up",
    "recommender_operator_reconcile_total",
    "recommender_operator_reconcile_errors_total",
    "recommender_operator_reconcile_duration_seconds",
    "recommender_model_condition",
    "recommender_model_age_seconds",
    "recommender_model_serving_rmse",
    "recommender_model_serving_mae",
    "recommender_model_serving_info",
    "recommender_model_training_runs_total",
    "recommender_model_last_successful_training_timestamp_seconds",
    "recommender_model_predictor_replicas",
    "recommender_rollout_stage",
    "recommender_rollout_candidate_share",
    "recommender_rollout_aborts_total",
    "recommender_rollout_inconclusive",
} | {
    "recommender_predictor_" + m
    for m in (
        "http_request_duration_seconds",
        "http_requests_total",
        "model_info",
        "model_loaded",
        "model_age_seconds",
        "model_load_timestamp_seconds",
        "model_reloads_total",
        "model_load_failures_total",
        "online_rmse",
        "online_mae",
        "online_error_samples",
        "suggestion_acceptance_ratio",
        "feedback_total",
        "suggestions_accepted_total",
        "suggestions_served_total",
        "cold_start_recommendations_total",
        "active_users",
        "engaged_users",
    )
}


def queries(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            # label_values(metric{...}, label) is Grafana's, not PromQL: check its selector.
            m = re.match(r"label_values\((.*),\s*\w+\)$", var["query"]["query"])
            yield f"variable {var['name']}", m.group(1) if m else var["query"]["query"]


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    dashboard = json.loads(pathlib.Path(sys.argv[1]).read_text())
    rules, problems = [], []
    for i, (title, expr) in enumerate(queries(dashboard)):
        for var, value in VARIABLES.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            problems.append(f"{title}: unknown variable in {expr}")
        for metric in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", expr):
            name = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric not in KNOWN and name not in KNOWN:
                problems.append(f"{title}: unknown metric {metric}")
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    if problems:
        raise SystemExit("dashboard_queries.py:\n  " + "\n  ".join(problems))
    pathlib.Path(sys.argv[2]).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


if __name__ == "__main__":
    main()
