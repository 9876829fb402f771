#!/usr/bin/env python3
"""Shows that vocabulary.py can fail: each case mutates the real alert rules or dashboard the way a
typo or a wrong copy would, and the checker must name the alert (or panel) and the word.

Usage: test_vocabulary.py VOCABULARY.json ALERTS.yaml DASHBOARD.json
"""

import copy
import json
import pathlib
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vocabulary


def alert(doc, name):
    return next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == name)


def edit_alert(name, old, new):
    def change(alerts, _dashboard):
        rule = alert(alerts, name)
        if old not in rule["expr"]:
            raise SystemExit(f"test_vocabulary.py: {old!r} not in the expr of {name}")
        rule["expr"] = rule["expr"].replace(old, new)

    return change


def edit_panel(title, old, new):
    def change(_alerts, dashboard):
        panel = next(p for p in dashboard["panels"] if p.get("title") == title)
        target = panel["targets"][0]
        if old not in target["expr"]:
            raise SystemExit(f"test_vocabulary.py: {old!r} not in the query of panel {title!r}")
        target["expr"] = target["expr"].replace(old, new)

    return change


# (what, mutation, words the report must contain)
CASES = [
    (
        "misspelt reason",
        edit_alert("RecommenderModelTrainerStuck", 'reason="TrainerPodStuck"', 'reason="TrainerPodStuk"'),
        ["RecommenderModelTrainerStuck", "'TrainerPodStuk'"],
    ),
    (
        "reason of another condition type",
        edit_alert("RecommenderModelTrainerStuck", 'type="WorkersHealthy"', 'type="Serving"'),
        ["RecommenderModelTrainerStuck", "Serving has no reason 'TrainerPodStuck'"],
    ),
    (
        "unknown condition type",
        edit_alert("RecommenderModelStale", 'type="Stale"', 'type="Staleness"'),
        ["RecommenderModelStale", "no condition type 'Staleness'"],
    ),
    (
        "misspelt status",
        edit_alert("RecommenderModelDatabaseUnreachable", 'status="False"', 'status="false"'),
        ["RecommenderModelDatabaseUnreachable", "status 'false'"],
    ),
    (
        "an excluded reason that does not exist widens the rule",
        edit_alert("RecommenderModelNotServing", "NoModel|ScaledToZero", "NoModel|ScaledToZer0"),
        ["RecommenderModelNotServing", "'ScaledToZer0'"],
    ),
    (
        "a run reason where a condition reason belongs",
        edit_alert("RecommenderModelTrainingFailing", 'reason="TrainingFailed"', 'reason="JobMissing"'),
        ["RecommenderModelTrainingFailing", "'JobMissing'"],
    ),
    (
        "misspelt rollout end reason",
        edit_alert("RecommenderModelRolloutAborted", "ManualAbort|", "ManualAbrot|"),
        ["RecommenderModelRolloutAborted", "no rollout end reason 'ManualAbrot'"],
    ),
    (
        "dashboard query with a wrong rollout stage",
        edit_panel("Rollout stage", "name=~", 'stage="Canry", name=~'),
        ["Rollout stage", "no rollout stage 'Canry'"],
    ),
    (
        "dashboard query with a wrong type",
        edit_panel("Promotion outcome of the last candidate", 'type="Promoted"', 'type="Promotion"'),
        ["Promotion outcome of the last candidate", "'Promotion'"],
    ),
    (
        "dashboard query with a wrong outcome",
        edit_panel("Training runs by outcome", "name=~", 'outcome="Success", name=~'),
        ["Training runs by outcome", "run outcome 'Success'"],
    ),
]


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    vocab = json.loads(pathlib.Path(sys.argv[1]).read_text())
    alerts = yaml.safe_load(pathlib.Path(sys.argv[2]).read_text())
    dashboard = json.loads(pathlib.Path(sys.argv[3]).read_text())
    clean = vocabulary.problems(vocab, alerts, [("dashboard", dashboard)])
    if clean:
        raise SystemExit(f"test_vocabulary.py: the unchanged rules fail: {clean}")
    for what, mutate, expected in CASES:
        doctored_alerts, doctored_dashboard = copy.deepcopy(alerts), copy.deepcopy(dashboard)
        mutate(doctored_alerts, doctored_dashboard)
        found = "\n".join(vocabulary.problems(vocab, doctored_alerts, [("dashboard", doctored_dashboard)]))
        missing = [e for e in expected if e not in found]
        if missing:
            raise SystemExit(f"test_vocabulary.py: {what}: report lacks {missing}:\n{found or '(nothing reported)'}")
    print(f"{len(CASES)} mutated rules and queries rejected, the real ones accepted")


if __name__ == "__main__":
    main()
