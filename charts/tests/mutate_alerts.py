#!/usr/bin/env python3
"""Checks that alerts_test.yaml can fail: each mutant of files/alerts.yaml (a shortened `for:`, a
widened selector, a loosened threshold) must make `promtool test rules` fail. A mutant that
passes means some alert's timing or its "silent otherwise" cases are not really tested.

Usage: mutate_alerts.py PROMTOOL
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE.parent / "recommender-operator" / "files" / "alerts.yaml"
TESTS = HERE / "alerts_test.yaml"

# (alert, text in its expr, replacement): each widens what the alert matches so that one of the
# look-alike series in alerts_test.yaml would fire (or, for the quantile, watches the wrong one so
# that the real case would not).
WIDENINGS = [
    ("RecommenderModelStale", 'status="True"', 'status=~".+"'),
    ("RecommenderModelAccuracyDegraded", 'status="True"', 'status=~".+"'),
    ("RecommenderModelAccuracyDegraded", 'type="AccuracyDegraded", ', ""),
    ("RecommenderModelTrainingFailing", 'reason="TrainingFailed"', 'reason=~".+"'),
    ("RecommenderModelCandidateBlocked", 'reason="GateFailed"', 'reason=~"GateFailed|NotBetter"'),
    ("RecommenderModelDatabaseUnreachable", 'status="False"', 'status=~".+"'),
    ("RecommenderModelStoreUnreachable", 'status="False"', 'status=~".+"'),
    ("RecommenderModelPredictorUnavailable", " < max", " <= max"),
    ("RecommenderModelNotServing", 'type="Serving", ', ""),
    ("RecommenderModelNotServing", 'status="False"', 'status=~".+"'),
    ("RecommenderModelNotServing", ', reason!~"NoModel|ScaledToZero"', ""),
    ("RecommenderModelNoPromotedModel", 'reason="NoModel"', 'reason=~".+"'),
    ("RecommenderModelNoPromotedModel", 'reason="Suspended"', 'reason="NoSuchReason"'),
    ("RecommenderModelTrainerStuck", 'reason="TrainerPodStuck"', 'reason=~".+"'),
    (
        "RecommenderModelTrainingPastDeadline",
        "> max by (namespace, name) (recommender_model_active_run_deadline_seconds)",
        "> 0",
    ),
    ("RecommenderModelLatencyObjectiveMissed", 'quantile="0.99"', 'quantile="0.5"'),
    (
        "RecommenderModelLatencyObjectiveMissed",
        "max by (namespace, name) (recommender_model_latency_objective_seconds)",
        "0.005",
    ),
    ("RecommenderModelOnlineRmseOverGate", "max by (namespace, name) (recommender_model_max_rmse)", "1"),
    ("RecommenderModelOnlineRmseOverGate", ">= 100", ">= 0"),
    ("RecommenderModelAcceptanceCollapsed", "< 0.5 *", "< 1 *"),
    ("RecommenderModelAcceptanceCollapsed", ">= 100", ">= 0"),
    ("RecommenderModelRolloutAborted", '{reason!~"ManualAbort|Pinned|Superseded"}', ""),
    ("RecommenderModelRolloutAborted", "[15m]) > 0", "[15m]) >= 0"),
    ("RecommenderModelRolloutAborted", "unless recommender_rollout_aborts_total offset 15m", ""),
    ("RecommenderModelRolloutInconclusive", "== 1", ">= 0"),
    ("RecommenderOperatorDown", "sum by (namespace, job)", "min by (namespace, job)"),
    ("RecommenderOperatorReconcileErrors", "> 0.1", "> 0.01"),
]


def mutants(doc):
    """Yields (description, mutated document) pairs."""
    names = [r["alert"] for g in doc["groups"] for r in g["rules"]]
    for name in names:
        yield f"{name}: for 0s", _mutate(doc, name, lambda r: r.__setitem__("for", "0s"))
    for name, old, new in WIDENINGS:
        if name not in names:
            raise SystemExit(f"mutate_alerts.py: no alert {name} in {RULES}")

        def widen(rule, old=old, new=new, name=name):
            expr = rule["expr"].rstrip("\n")
            if old not in expr:
                raise SystemExit(f"mutate_alerts.py: {name}: {old!r} not in its expr")
            rule["expr"] = expr.replace(old, new)

        yield f"{name}: {old.strip()} -> {new.strip() or '(removed)'}", _mutate(doc, name, widen)


def _mutate(doc, name, change):
    copy = yaml.safe_load(yaml.safe_dump(doc))
    for group in copy["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == name:
                change(rule)
    return copy


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    promtool = sys.argv[1]
    doc = yaml.safe_load(RULES.read_text())
    survivors = 0
    with tempfile.TemporaryDirectory() as tmp:
        # Same relative layout as the real files, so the test file's rule_files path resolves.
        rules = pathlib.Path(tmp, "recommender-operator", "files", "alerts.yaml")
        rules.parent.mkdir(parents=True)
        tests = pathlib.Path(tmp, "tests", "alerts_test.yaml")
        tests.parent.mkdir()
        shutil.copy(TESTS, tests)
        total = 0
        for label, mutant in mutants(doc):
            total += 1
            rules.write_text(yaml.safe_dump(mutant, sort_keys=False))
            run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False)
            if run.returncode == 0:
                survivors += 1
                print(f"  SURVIVED {label}")
            else:
                print(f"  caught   {label}")
    print(f"{total - survivors}/{total} mutants caught")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
