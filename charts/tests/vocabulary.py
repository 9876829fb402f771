#!/usr/bin/env python3
"""Fails when an alert rule or a dashboard query names a condition type, status or reason (or a
training-run outcome) that the operator cannot emit: such a rule would silently never match.
The words come from the operator itself (`crdgen --vocabulary`, from the enums that write them).

Checked: the label matchers of `recommender_model_condition` (type, status, reason; a reason must
belong to the type the selector names), of `recommender_model_training_runs_total` (outcome), and
of the rollout metrics (`recommender_rollout_aborts_total`'s reason, `recommender_rollout_stage`'s
stage). A regex matcher is checked when it is a plain alternation of words (`A|B`); others
(`.+`, Grafana variables) cannot name a word and are left alone. Negative matchers are checked
too: excluding a word that does not exist widens the rule.

Usage: vocabulary.py VOCABULARY.json ALERTS.yaml [DASHBOARD.json ...]
"""

import json
import pathlib
import re
import sys

import yaml

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
WORDS = re.compile(r"^\w+(\|\w+)*$")
# The rollout metrics' word labels: metric -> (label, vocabulary key, what a word of it is).
ROLLOUT_LABELS = {
    "recommender_rollout_aborts_total": ("reason", "rolloutEndReasons", "rollout end reason"),
    "recommender_rollout_stage": ("stage", "rolloutStages", "rollout stage"),
}


def _words(op, value):
    """The literal words a matcher names, or None when it names none (a pattern)."""
    if op in ("=", "!="):
        return [value]
    return value.split("|") if WORDS.match(value) else None


def check_expr(vocab, where, expr):
    """Problems with the words one PromQL expression names."""
    conditions = vocab["conditions"]
    problems = []
    for metric, body in SELECTOR.findall(expr):
        matchers = [(label, op, _words(op, value)) for label, op, value in MATCHER.findall(body)]
        if metric == "recommender_model_condition":
            types = list(conditions)
            for label, op, words in matchers:
                if label == "type" and words is not None:
                    problems += [f"{where}: no condition type {w!r}" for w in words if w not in conditions]
                    if op in ("=", "=~"):
                        types = [w for w in words if w in conditions]
            allowed = {
                "status": set(vocab["conditionStatuses"]),
                "reason": {r for t in types for r in conditions[t]},
            }
            for label, op, words in matchers:
                for word in words or []:
                    if label in allowed and word not in allowed[label]:
                        problems.append(f"{where}: {'/'.join(types)} has no {label} {word!r}")
        elif metric == "recommender_model_training_runs_total":
            for label, op, words in matchers:
                for word in words or []:
                    if label == "outcome" and word not in vocab["runOutcomes"]:
                        problems.append(f"{where}: no run outcome {word!r}")
        elif metric in ROLLOUT_LABELS:
            label_checked, key, what = ROLLOUT_LABELS[metric]
            for label, op, words in matchers:
                if label != label_checked or not words:
                    continue
                if key not in vocab:
                    problems.append(f"{where}: crdgen --vocabulary lists no {key} to check {metric}{{{label}}}")
                    continue
                problems += [f"{where}: no {what} {w!r}" for w in words if w not in vocab[key]]
    return problems


def dashboard_queries(dashboard):
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target.get("expr", "")


def problems(vocab, alerts, dashboards):
    """Every problem in the alert rules document and the (name, dashboard) pairs."""
    found = []
    for group in alerts["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            found += check_expr(vocab, f"alert {name}", rule["expr"])
    for name, dashboard in dashboards:
        for title, expr in dashboard_queries(dashboard):
            found += check_expr(vocab, f"{name} panel {title!r}", expr)
    return found


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    vocab = json.loads(pathlib.Path(sys.argv[1]).read_text())
    alerts = yaml.safe_load(pathlib.Path(sys.argv[2]).read_text())
    dashboards = [(pathlib.Path(p).name, json.loads(pathlib.Path(p).read_text())) for p in sys.argv[3:]]
    found = problems(vocab, alerts, dashboards)
    if found:
        raise SystemExit("vocabulary.py: words the operator never writes:\n  " + "\n  ".join(found))
    checked = sum(len(g["rules"]) for g in alerts["groups"])
    print(f"{checked} alert rules and {len(dashboards)} dashboard(s) name only words the operator writes")


if __name__ == "__main__":
    main()
