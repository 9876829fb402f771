//! A Prometheus server of the test's own (tests/cluster/prometheus.sh): it discovers the
//! operator and its predictors on the local cluster as the chart's ServiceMonitor and PodMonitor
//! select them, and evaluates the chart's alert rules with every `for:` shortened. Read through
//! its HTTP API; the PromQL helpers find which metrics a rule or a dashboard query reads.

use crate::env::Env;
use crate::http::get_json;
use crate::wait::wait_for;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Prometheus {
    pub url: String,
    script: PathBuf,
}

/// One alert as `/api/v1/alerts` lists it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Prometheus {
    /// Starts a fresh server for an operator released in `namespace` watching `watch` (the same
    /// values `Operator::install` gives the chart), and waits until it is ready.
    pub fn start(env: &Env, namespace: &str, watch: &str) -> Self {
        let script = env.repo.join("tests/cluster/prometheus.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", "--namespace", namespace, "--watch", watch])
            .output()
            .expect("run tests/cluster/prometheus.sh up");
        assert!(
            out.status.success(),
            "prometheus.sh up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env_out = Command::new("bash")
            .arg(&script)
            .arg("env")
            .output()
            .expect("run tests/cluster/prometheus.sh env");
        let text = String::from_utf8_lossy(&env_out.stdout);
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("export RECOMMENDER_PROMETHEUS_URL="))
            .unwrap_or_else(|| panic!("prometheus.sh env printed no URL: {text}"))
            .trim()
            .to_string();
        Self { url, script }
    }

    async fn api(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        let (code, body) = get_json(&url)
            .await
            .unwrap_or_else(|e| panic!("Prometheus API: {e}"));
        assert_eq!(code, 200, "GET {url}: {body}");
        assert_eq!(body["status"], "success", "GET {url}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Pending and firing alerts.
    pub async fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts").await;
        let strings = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let labels = strings(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    state: a["state"].as_str().unwrap_or_default().to_string(),
                    labels,
                    annotations: strings(&a["annotations"]),
                }
            })
            .collect()
    }

    /// The alert `name` about model `ns/model`, if pending or firing.
    pub async fn alert(&self, name: &str, ns: &str, model: &str) -> Option<Alert> {
        self.alerts().await.into_iter().find(|a| {
            a.name == name
                && a.labels.get("namespace").map(String::as_str) == Some(ns)
                && a.labels.get("name").map(String::as_str) == Some(model)
        })
    }

    /// Waits until the alert fires and returns it, with whether it was seen pending first (its
    /// `for:` at work).
    pub async fn wait_firing(
        &self,
        name: &str,
        ns: &str,
        model: &str,
        timeout: Duration,
    ) -> (Alert, bool) {
        let start = Instant::now();
        let mut pending = false;
        let mut last = None;
        while start.elapsed() < timeout {
            if let Some(alert) = self.alert(name, ns, model).await {
                if alert.state == "firing" {
                    return (alert, pending);
                }
                pending |= alert.state == "pending";
                last = Some(alert);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "timed out after {timeout:?} waiting for {name} to fire for {ns}/{model}; last seen: \
             {last:?}; all alerts: {:?}",
            self.alerts().await
        );
    }

    /// Waits until the alert about `ns/model` is neither pending nor firing.
    pub async fn wait_resolved(&self, name: &str, ns: &str, model: &str, timeout: Duration) {
        wait_for(
            timeout,
            &format!("{name} of {ns}/{model} to resolve"),
            || async { self.alert(name, ns, model).await.is_none().then_some(()) },
        )
        .await
    }

    /// Waits until the query returns at least one sample; returns them.
    pub async fn wait_query(&self, promql: &str, timeout: Duration) -> Vec<Value> {
        wait_for(
            timeout,
            &format!("`{promql}` to return samples"),
            || async {
                let result = self.query(promql).await;
                (!result.is_empty()).then_some(result)
            },
        )
        .await
    }

    /// Label sets of the series matching `selector` seen since `since` (Unix seconds).
    pub async fn series(&self, selector: &str, since: f64) -> Vec<BTreeMap<String, String>> {
        let data = self
            .api(&format!(
                "/api/v1/series?match[]={}&start={since}",
                encode(selector)
            ))
            .await;
        data.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                s.as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The `(rule name, query)` of every rule the server loaded.
    pub async fn rule_queries(&self) -> Vec<(String, String)> {
        let data = self.api("/api/v1/rules").await;
        let mut out = Vec::new();
        for group in data["groups"].as_array().cloned().unwrap_or_default() {
            for rule in group["rules"].as_array().cloned().unwrap_or_default() {
                out.push((
                    rule["name"].as_str().unwrap_or_default().to_string(),
                    rule["query"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        out
    }
}

/// Stopping the server even when the test panicked.
impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("down").output();
    }
}

/// Percent-encoding of a query parameter's value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A metric a query reads and the label names its selector matches on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub metric: String,
    pub labels: BTreeSet<String>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised label list.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "Inf", "NaN",
];

/// The metrics a PromQL expression reads, each with the label names of its matchers. Grafana's
/// `label_values(SELECTOR, label)` is read as its selector. Functions, aggregations, keywords,
/// label lists, strings, ranges and numbers are skipped.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let expr = expr.trim();
    let expr = match expr
        .strip_prefix("label_values(")
        .and_then(|rest| rest.rsplit_once(','))
    {
        Some((selector, _)) => selector,
        None => expr,
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_to(&chars, i, ']');
        } else if c == '{' {
            // A selector without a metric name: {__name__="..."}.
            let (labels, end) = matchers(&chars, i);
            if let Some(name) = labels.get("__name__") {
                out.push(Selector {
                    metric: name.clone(),
                    labels: labels
                        .keys()
                        .filter(|k| *k != "__name__")
                        .cloned()
                        .collect(),
                });
            }
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit())
        {
            // A number or a duration (1h, 0.5, 1e3): digits, letters and dots.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            let following = chars.get(next).copied();
            let is_label_list = LABEL_LISTS.contains(&word.as_str());
            let is_call = following == Some('(') || AGGREGATIONS.contains(&word.as_str());
            if is_label_list && following == Some('(') {
                i = skip_to(&chars, next, ')');
            } else if !(is_label_list || is_call || KEYWORDS.contains(&word.as_str())) {
                // Not a function, an aggregation (their arguments are scanned in turn) or a
                // keyword: a metric name.
                let mut labels = BTreeSet::new();
                if following == Some('{') {
                    let (found, end) = matchers(&chars, next);
                    labels = found.into_keys().collect();
                    i = end;
                }
                out.push(Selector {
                    metric: word,
                    labels,
                });
            }
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

fn skip_to(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != close {
        if matches!(chars[i], '"' | '\'' | '`') {
            i = skip_string(chars, i);
        } else {
            i += 1;
        }
    }
    i + 1
}

/// The matchers of `{...}` starting at `start`: label name → value (as written); and the index
/// after the closing brace.
fn matchers(chars: &[char], start: usize) -> (BTreeMap<String, String>, usize) {
    let mut out = BTreeMap::new();
    let mut i = start + 1;
    while i < chars.len() && chars[i] != '}' {
        if chars[i].is_ascii_alphabetic() || chars[i] == '_' {
            let s = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[s..i].iter().collect();
            while i < chars.len() && !matches!(chars[i], '"' | '\'' | '`' | '}' | ',') {
                i += 1;
            }
            let mut value = String::new();
            if i < chars.len() && matches!(chars[i], '"' | '\'' | '`') {
                let end = skip_string(chars, i);
                value = chars[i + 1..end - 1].iter().collect();
                i = end;
            }
            out.insert(name, value);
        } else {
            i += 1;
        }
    }
    (out, i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<(String, Vec<String>)> {
        selectors(expr)
            .into_iter()
            .map(|s| (s.metric, s.labels.into_iter().collect()))
            .collect()
    }

    #[test]
    fn finds_the_metrics_of_rules_and_panels() {
        assert_eq!(
            names(
                r#"sum by (namespace, job, error) (rate(recommender_operator_reconcile_errors_total{job="recommender-operator"}[10m]))
  / ignoring (error) group_left
sum by (namespace, job) (rate(recommender_operator_reconcile_total{job="recommender-operator"}[10m])) > 0.1"#
            ),
            vec![
                (
                    "recommender_operator_reconcile_errors_total".into(),
                    vec!["job".into()]
                ),
                (
                    "recommender_operator_reconcile_total".into(),
                    vec!["job".into()]
                ),
            ]
        );
        assert_eq!(
            names(
                r#"time() - max by (namespace, name) (a_started) > max by (namespace, name) (b_deadline) unless on (namespace, name) c{type="Training", reason="Suspended"} == 1"#
            ),
            vec![
                ("a_started".into(), vec![]),
                ("b_deadline".into(), vec![]),
                ("c".into(), vec!["reason".into(), "type".into()]),
            ]
        );
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{namespace="$namespace", pod=~"($model)-predictor-.*", route=~"/v1/.*"}[$__rate_interval])))"#
            ),
            vec![(
                "x_bucket".into(),
                vec!["namespace".into(), "pod".into(), "route".into()]
            )]
        );
        assert_eq!(
            names(r#"avg_over_time(r[1d] offset 1h) and up{job="a"} or absent(up{job="b"})"#),
            vec![("r".into(), vec![]), ("up".into(), vec!["job".into()])]
        );
        assert_eq!(
            names(r#"label_values(recommender_model_condition{namespace="$namespace"}, name)"#),
            vec![(
                "recommender_model_condition".into(),
                vec!["namespace".into()]
            )]
        );
        assert_eq!(
            names("label_values(recommender_model_condition, namespace)").len(),
            1
        );
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode(r#"up{job="a b"}"#), "up%7Bjob%3D%22a%20b%22%7D");
    }
}
