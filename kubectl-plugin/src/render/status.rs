//! `status NAME`: the model as a tree, from what it is (phase, serving version) to how it does
//! (predictor, online figures, runs), then the rollout, then the conditions that explain it all.

use super::fields::Fields;
use super::format::{age, duration, metric, optional_latency, optional_metric, percent, table};
use jiff::Timestamp;
use kube::ResourceExt;
use recommender_operator::crd::{
    DataStatus, ModelRecord, OnlineStatus, PredictorStatus, RecommenderModel,
    RecommenderModelStatus, RunLedger,
};

/// The whole tree as `status` prints it, ages taken at `now`.
pub fn tree(model: &RecommenderModel, now: Timestamp) -> String {
    let mut f = Fields::default();
    f.field(0, "Name", model.name_any());
    f.field(0, "Namespace", model.namespace().unwrap_or_default());
    let Some(status) = &model.status else {
        f.field(
            0,
            "Phase",
            "no status yet: the operator has not reconciled it",
        );
        return f.render();
    };
    f.field(0, "Phase", phase(model, status));
    serving(&mut f, model, status.serving.as_ref(), now);
    if let Some(predictor) = &status.predictor {
        f.field(0, "Predictor", predictor_line(predictor));
    }
    if let Some(url) = &status.url {
        f.field(0, "URL", url);
    }
    if let Some(online) = &status.online {
        online_fields(&mut f, online, now);
    }
    if let Some(data) = &status.data {
        f.field(0, "New data", data_line(data, now));
    }
    runs(&mut f, status, now);
    if let Some(rollout) = &status.rollout {
        super::rollout::fields(&mut f, model, rollout, now);
    }
    let mut out = f.render();
    out.push_str(&conditions(status, now));
    out
}

fn phase(model: &RecommenderModel, status: &RecommenderModelStatus) -> String {
    let mut text = format!("{:?}", status.phase);
    if status.stale {
        text.push_str(", stale");
    }
    // After an edit (pause, rollback) the status speaks of the spec before it until the
    // operator has reconciled the new generation.
    if let (Some(generation), Some(observed)) =
        (model.metadata.generation, status.observed_generation)
        && observed < generation
    {
        text.push_str(&format!(
            " (the operator has not reconciled generation {generation} yet, only {observed})"
        ));
    }
    text
}

fn serving(
    f: &mut Fields,
    model: &RecommenderModel,
    serving: Option<&ModelRecord>,
    now: Timestamp,
) {
    let pinned = model.spec.pinned_version.as_deref();
    let Some(record) = serving else {
        f.field(0, "Serving", "no model yet");
        if let Some(pin) = pinned {
            f.field(1, "Pinned", format!("{pin} (spec.pinnedVersion)"));
        }
        return;
    };
    f.field(
        0,
        "Serving",
        format!(
            "{} (run {}, trained {} ago)",
            record.version,
            record.run,
            age(now, record.trained_at)
        ),
    );
    let m = &record.metrics;
    f.field(
        1,
        "Metrics",
        format!(
            "RMSE {}  MAE {}  accuracy {}  ({}-fold cross-validation)",
            metric(m.rmse),
            metric(m.mae),
            metric(m.accuracy),
            m.folds
        ),
    );
    if let Some(forward) = &record.forward {
        f.field(
            1,
            "Forward",
            format!(
                "RMSE {}  MAE {}  accuracy {}  on {} newer ratings, {} ago",
                metric(forward.rmse),
                metric(forward.mae),
                metric(forward.accuracy),
                forward.ratings,
                age(now, forward.evaluated_at)
            ),
        );
    }
    if let Some(pin) = pinned {
        let note = if pin == record.version {
            "serving it"
        } else {
            "not serving it yet"
        };
        f.field(1, "Pinned", format!("{pin} (spec.pinnedVersion, {note})"));
    }
}

fn predictor_line(p: &PredictorStatus) -> String {
    format!(
        "{}, {}/{} replicas available",
        p.version, p.available_replicas, p.desired_replicas
    )
}

fn online_fields(f: &mut Fields, o: &OnlineStatus, now: Timestamp) {
    let replicas = if o.replicas == 1 {
        "replica"
    } else {
        "replicas"
    };
    f.field(
        0,
        "Online",
        format!(
            "{} on {} {replicas}, collected {} ago",
            o.version,
            o.replicas,
            age(now, o.observed_at)
        ),
    );
    let requests = match o.requests_per_second {
        Some(rate) => format!(
            "{rate:.1}/s  p50 {}  p99 {}",
            optional_latency(o.latency_p50_seconds),
            optional_latency(o.latency_p99_seconds)
        ),
        None => "none in the last interval".into(),
    };
    f.field(1, "Requests", requests);
    let feedback = if o.feedback == 0 {
        "no ratings yet".into()
    } else {
        let bias = o
            .average_difference
            .map(|d| format!("  bias {d:+.4}"))
            .unwrap_or_default();
        format!(
            "{} ratings  RMSE {}  MAE {}  accuracy {}{bias}",
            o.feedback,
            optional_metric(o.rmse),
            optional_metric(o.mae),
            optional_metric(o.accuracy)
        )
    };
    f.field(1, "Feedback", feedback);
    // A share only where its denominator is not zero: "0 rated (NaN%)" says nothing.
    let of = |part: u64, whole: u64, what: &str| {
        if whole == 0 {
            String::new()
        } else {
            format!(" ({}{what})", percent(part as f64 / whole as f64))
        }
    };
    f.field(
        1,
        "Suggestions",
        format!(
            "{} shown  {} rated{}  {} accepted{}",
            o.suggestions_shown,
            o.suggestions_rated,
            of(o.suggestions_rated, o.suggestions_shown, ""),
            o.suggestions_accepted,
            of(o.suggestions_accepted, o.suggestions_rated, " of rated")
        ),
    );
    f.field(
        1,
        "Users",
        format!(
            "{} active  {} engaged{}  over {}",
            o.active_users,
            o.engaged_users,
            of(o.engaged_users, o.active_users, ""),
            duration(o.users_window_seconds)
        ),
    );
}

fn data_line(d: &DataStatus, now: Timestamp) -> String {
    let mut text = format!(
        "{} ratings newer than {}'s snapshot ({} new users, {} new items), counted {} ago",
        d.new_ratings,
        d.version,
        d.new_users,
        d.new_items,
        age(now, d.counted_at)
    );
    if let Some(error) = &d.error {
        text.push_str(&format!("; the last count failed: {error}"));
    }
    text
}

fn runs(f: &mut Fields, status: &RecommenderModelStatus, now: Timestamp) {
    let c = status.run_counts;
    f.field(
        0,
        "Runs",
        format!(
            "{} succeeded, {} failed, {} rejected",
            c.succeeded, c.failed, c.rejected
        ),
    );
    let RunLedger {
        active,
        retry_after,
        consecutive_failures,
        ..
    } = &status.runs;
    if let Some(run) = active {
        f.field(
            1,
            "Active",
            format!(
                "run {} ({}), {}, started {} ago",
                run.run,
                run.trigger,
                run.job,
                age(now, run.started_at)
            ),
        );
    }
    if let Some(after) = retry_after
        && *after > now
    {
        f.field(
            1,
            "Retry",
            format!(
                "in {} ({consecutive_failures} failed in a row)",
                age(*after, now)
            ),
        );
    }
}

fn conditions(status: &RecommenderModelStatus, now: Timestamp) -> String {
    if status.conditions.is_empty() {
        return "Conditions:  none yet\n".into();
    }
    let mut rows = vec![
        ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(status.conditions.iter().map(|c| {
        vec![
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            age(now, c.last_transition_time.0),
            c.message.clone(),
        ]
    }));
    format!("Conditions:\n{}", table("  ", &rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{model, now, serving_model};
    use serde_json::json;

    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in\n{text}"))
    }

    #[test]
    fn a_serving_model_reads_top_down() {
        let text = tree(&serving_model(), now());
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(
            heads,
            [
                "Name",
                "Namespace",
                "Phase",
                "Serving",
                "Predictor",
                "URL",
                "Online",
                "Runs",
                "Conditions"
            ],
            "{text}"
        );
        assert_eq!(line(&text, "Phase:"), "Phase:          Serving");
        assert_eq!(
            line(&text, "Serving:"),
            "Serving:        v2 (run 2, trained 3d ago)"
        );
        assert_eq!(
            line(&text, "Metrics:").trim(),
            "Metrics:      RMSE 0.9312  MAE 0.7412  accuracy 0.7243  (4-fold cross-validation)"
        );
        assert!(
            line(&text, "Forward:").contains(
                "RMSE 0.9511  MAE 0.7512  accuracy 0.7102  on 1234 newer ratings, 120m ago"
            ),
            "{text}"
        );
        assert_eq!(
            line(&text, "Predictor:"),
            "Predictor:      v2, 2/2 replicas available"
        );
        assert_eq!(
            line(&text, "Online:"),
            "Online:         v2 on 2 replicas, collected 0s ago"
        );
        assert!(
            line(&text, "Requests:").ends_with("12.3/s  p50 1.2ms  p99 4.5ms"),
            "{text}"
        );
        assert!(
            line(&text, "Feedback:")
                .ends_with("1234 ratings  RMSE 0.9500  MAE 0.7400  accuracy 0.7210  bias +0.0300"),
            "{text}"
        );
        assert!(
            line(&text, "Suggestions:")
                .ends_with("1000 shown  300 rated (30.0%)  210 accepted (70.0% of rated)"),
            "{text}"
        );
        assert!(
            line(&text, "Users:").ends_with("120 active  40 engaged (33.3%)  over 60m"),
            "{text}"
        );
        assert!(
            line(&text, "Active:").ends_with("run 4 (Requested), movies-train-4, started 2m ago"),
            "{text}"
        );
        // Every value starts in one column.
        let column = |l: &str| {
            l.find(':')
                .map(|c| c + 1 + l[c + 1..].len() - l[c + 1..].trim_start().len())
        };
        let columns: std::collections::BTreeSet<_> = text
            .lines()
            .take_while(|l| !l.starts_with("Conditions"))
            .filter_map(column)
            .collect();
        assert_eq!(columns.len(), 1, "values in one column:\n{text}");
    }

    #[test]
    fn conditions_come_last_as_a_table() {
        let text = tree(&serving_model(), now());
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "Conditions:")
            .skip(1)
            .collect();
        assert_eq!(
            table,
            [
                "  TYPE      STATUS  REASON   AGE  MESSAGE",
                "  Ready     True    Ready    3d   serving, database reachable, workers healthy",
                "  Training  True    Running  2m   run 3 (movies-train-3) started (Requested)",
                "  Stale     False   Fresh    3d",
            ]
        );
    }

    #[test]
    fn a_new_model_says_what_it_lacks() {
        let fresh: RecommenderModel =
            serde_json::from_value(model(serde_json::Value::Null)).unwrap();
        let text = tree(&fresh, now());
        assert_eq!(
            text,
            "Name:       movies\nNamespace:  shop\nPhase:      no status yet: the operator has not reconciled it\n"
        );
        let training: RecommenderModel =
            serde_json::from_value(model(json!({"phase": "Training", "observedGeneration": 2})))
                .unwrap();
        let text = tree(&training, now());
        assert_eq!(
            line(&text, "Phase:"),
            "Phase:      Training (the operator has not reconciled generation 3 yet, only 2)"
        );
        assert_eq!(line(&text, "Serving:"), "Serving:    no model yet");
        assert!(text.ends_with("Conditions:  none yet\n"), "{text}");
    }

    #[test]
    fn a_pin_says_whether_it_serves_yet() {
        let mut m = serving_model();
        m.spec.pinned_version = Some("v1".into());
        let text = tree(&m, now());
        assert!(
            line(&text, "Pinned:").ends_with("v1 (spec.pinnedVersion, not serving it yet)"),
            "{text}"
        );
        m.spec.pinned_version = Some("v2".into());
        let text = tree(&m, now());
        assert!(line(&text, "Pinned:").ends_with("v2 (spec.pinnedVersion, serving it)"));
    }

    #[test]
    fn online_figures_without_traffic_say_so() {
        let mut m = serving_model();
        let online = m.status.as_mut().unwrap().online.as_mut().unwrap();
        online.requests_per_second = None;
        online.feedback = 0;
        online.suggestions_shown = 0;
        online.suggestions_rated = 0;
        online.suggestions_accepted = 0;
        online.replicas = 1;
        let text = tree(&m, now());
        assert!(line(&text, "Online:").contains("on 1 replica,"), "{text}");
        assert!(line(&text, "Requests:").ends_with("none in the last interval"));
        assert!(line(&text, "Feedback:").ends_with("no ratings yet"));
        assert!(
            line(&text, "Suggestions:").ends_with("0 shown  0 rated  0 accepted"),
            "no share of nothing: {text}"
        );
    }

    #[test]
    fn a_failing_streak_shows_when_the_next_run_may_start() {
        let mut m = serving_model();
        let status = m.status.as_mut().unwrap();
        status.runs.active = None;
        status.runs.consecutive_failures = 2;
        status.runs.retry_after = Some(now() + jiff::SignedDuration::from_mins(5));
        let text = tree(&m, now());
        assert!(
            line(&text, "Retry:").ends_with("in 5m (2 failed in a row)"),
            "{text}"
        );
        // A backoff that has passed holds nothing back.
        m.status.as_mut().unwrap().runs.retry_after =
            Some(now() - jiff::SignedDuration::from_mins(5));
        assert!(!tree(&m, now()).contains("Retry:"));
    }
}
