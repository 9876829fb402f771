//! Which Secrets the operator may use, and reading one key of one. A spec can name any Secret of
//! its namespace, so the operator uses only those their owner opted in: labelled
//! `recommender.dev/allow=true`, or listed by the operator's `--allowed-secret NAMESPACE/NAME`
//! (the chart's `secretAllowList`), which a platform team controls without touching the Secret.

use crate::labels::ALLOW_SECRET;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A Secret by namespace and name, as `--allowed-secret` spells it (`NAMESPACE/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretName {
    pub namespace: String,
    pub name: String,
}

impl FromStr for SecretName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        };
        match text.split_once('/') {
            Some((namespace, name)) if valid(namespace) && valid(name) => Ok(Self {
                namespace: namespace.into(),
                name: name.into(),
            }),
            _ => Err(format!(
                "'{text}' is not NAMESPACE/NAME (lower-case names of Kubernetes objects)"
            )),
        }
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The operator's allow list; a Secret on it counts as opted in without the label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretPolicy {
    allowed: BTreeSet<SecretName>,
}

impl SecretPolicy {
    pub fn new(allowed: impl IntoIterator<Item = SecretName>) -> Self {
        Self {
            allowed: allowed.into_iter().collect(),
        }
    }

    /// Whether `secret` (of `namespace`) was opted in, by its label or by the list.
    pub fn permits(&self, secret: &Secret, namespace: &str) -> bool {
        let labelled = secret.labels().get(ALLOW_SECRET).map(String::as_str) == Some("true");
        labelled
            || self.allowed.contains(&SecretName {
                namespace: namespace.into(),
                name: secret.name_any(),
            })
    }
}

/// Why a Secret's value cannot be used; the text names the Secret and the spec field, never the
/// value.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// It exists but nobody opted it in: it was not read further.
    NotAllowed(String),
    /// Missing, lacking the key, or unreadable.
    Unavailable(String),
}

/// One key of the Secret `name` that the spec field `field` names, if it is opted in; also its
/// `resourceVersion`, which changes when the value does.
pub async fn secret_value(
    secrets: &Api<Secret>,
    policy: &SecretPolicy,
    namespace: &str,
    (name, key): (&str, &str),
    field: &str,
) -> Result<(Vec<u8>, Option<String>), Refusal> {
    let secret = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(Refusal::Unavailable(format!(
                "Secret {namespace}/{name} ({field}) not found"
            )));
        }
        Err(err) => {
            return Err(Refusal::Unavailable(format!(
                "cannot read Secret {namespace}/{name} ({field}): {err}"
            )));
        }
    };
    if !policy.permits(&secret, namespace) {
        return Err(Refusal::NotAllowed(format!(
            "Secret {namespace}/{name} ({field}) is not labelled {ALLOW_SECRET}=true nor on the \
             operator's allow list (--allowed-secret, the chart's secretAllowList)"
        )));
    }
    let version = secret.resource_version();
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|bytes| (bytes.0, version))
        .ok_or_else(|| {
            Refusal::Unavailable(format!(
                "Secret {namespace}/{name} ({field}) has no key {key:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, labels: serde_json::Value) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ml", "labels": labels},
            "data": {"password": "c2VjcmV0"}
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_is_used_when_labelled_or_listed_and_only_then() {
        let none = SecretPolicy::default();
        let labelled = secret("db", serde_json::json!({ALLOW_SECRET: "true"}));
        assert!(none.permits(&labelled, "ml"));
        for labels in [
            serde_json::json!({}),
            serde_json::json!({ALLOW_SECRET: "yes"}),
            serde_json::json!({"app": "db"}),
        ] {
            assert!(!none.permits(&secret("db", labels), "ml"));
        }

        let listed = SecretPolicy::new(["ml/db".parse().unwrap(), "shop/token".parse().unwrap()]);
        assert!(listed.permits(&secret("db", serde_json::json!({})), "ml"));
        // The list names a namespace: the same name elsewhere is not on it.
        assert!(!listed.permits(&secret("db", serde_json::json!({})), "other"));
        assert!(!listed.permits(&secret("token", serde_json::json!({})), "ml"));
        assert!(!listed.permits(&secret("db2", serde_json::json!({})), "ml"));
    }

    #[test]
    fn the_flag_takes_namespace_slash_name_and_names_what_is_wrong() {
        let parsed: SecretName = "shop/ratings-db".parse().unwrap();
        assert_eq!(
            (parsed.namespace.as_str(), parsed.name.as_str()),
            ("shop", "ratings-db")
        );
        assert_eq!(parsed.to_string(), "shop/ratings-db");
        for bad in [
            "ratings-db",
            "/db",
            "shop/",
            "shop/a/b",
            "Shop/db",
            "shop/db ",
            "",
        ] {
            let why = bad.parse::<SecretName>().unwrap_err();
            assert!(
                why.starts_with(&format!("'{bad}' is not NAMESPACE/NAME")),
                "{why}"
            );
        }
    }
}
