//! The words the operator's alerts and dashboards can match, listed from the enums that write
//! them: each condition type with the reasons it can carry, the condition statuses, event
//! reasons, and training-run outcomes, reasons and triggers. `crdgen --vocabulary` prints it, and
//! `charts/tests/vocabulary.py` fails on an alert rule or dashboard query naming anything else.

use crate::condition::{ConditionType, State};
use crate::crd::{RolloutEndReason, RolloutStage, RunOutcome, RunReason, RunTrigger};
use crate::decide;
use serde_json::{Map, Value, json};

pub fn vocabulary() -> Value {
    let words = |all: Vec<&'static str>| Value::from(all);
    let conditions: Map<String, Value> = ConditionType::ALL
        .iter()
        .map(|t| {
            let reasons = t.reasons().iter().map(|r| r.as_str()).collect();
            (t.to_string(), words(reasons))
        })
        .collect();
    // A reason several condition types share (`NoModel`) is listed once.
    let mut event_reasons: Vec<&str> = Vec::new();
    for reason in decide::event_reasons() {
        if !event_reasons.contains(&reason.as_str()) {
            event_reasons.push(reason.as_str());
        }
    }
    json!({
        "conditions": conditions,
        "conditionStatuses": words(State::ALL.iter().map(|s| s.as_str()).collect()),
        "eventReasons": words(event_reasons),
        "runOutcomes": words(RunOutcome::ALL.iter().map(|o| o.as_str()).collect()),
        // Reasons from elsewhere (the Job controller's, the trainer's) are kept as written too.
        "runReasons": words(RunReason::OWN.iter().map(RunReason::as_str).collect()),
        "runTriggers": words(RunTrigger::ALL.iter().map(|t| t.as_str()).collect()),
        // The `stage` and `reason` labels of the rollout metrics.
        "rolloutStages": words(RolloutStage::ALL.iter().map(|s| s.as_str()).collect()),
        "rolloutEndReasons": words(RolloutEndReason::ALL.iter().map(|r| r.as_str()).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_the_alert_rules_match() {
        let v = vocabulary();
        assert_eq!(v["conditions"].as_object().unwrap().len(), 11);
        let reasons = |t: &str| v["conditions"][t].as_array().unwrap().clone();
        assert!(reasons("WorkersHealthy").contains(&json!("TrainerPodStuck")));
        assert!(reasons("Promoted").contains(&json!("GateFailed")));
        assert!(!reasons("Serving").contains(&json!("TrainerPodStuck")));
        assert_eq!(v["conditionStatuses"], json!(["True", "False", "Unknown"]));
        let events = v["eventReasons"].as_array().unwrap();
        for reason in [
            "TrainingStarted",
            "CleanupStarted",
            "Unreachable",
            "InvalidSpec",
        ] {
            assert!(events.contains(&json!(reason)), "{reason}");
        }
        assert!(
            !events.contains(&json!("BackingOff")),
            "Training changes are announced by run events"
        );
        let no_model = events.iter().filter(|r| *r == "NoModel").count();
        assert_eq!(no_model, 1, "listed once");
        assert!(
            v["runReasons"]
                .as_array()
                .unwrap()
                .contains(&json!("JobMissing"))
        );
        assert!(reasons("RollingOut").contains(&json!("Inconclusive")));
        assert!(
            v["rolloutEndReasons"]
                .as_array()
                .unwrap()
                .contains(&json!("LowerAcceptance"))
        );
        assert_eq!(
            v["rolloutStages"],
            json!(["Shadow", "Canary", "Promoted", "Aborted"])
        );
    }
}
