//! The model store: `ModelStoreReachable` from the operator's probe and what the model's pods
//! say (a predictor's refusal of the version it was told to serve, a pod that cannot attach the
//! claim), and whether pods may be started or changed at all (not with a Secret the user did not
//! allow).

use crate::condition::{Desired, ModelStoreReachableReason as Why, State};
use crate::observe::{Observed, PodTrouble, StoreProbe};
use recommender_contract::refusal::RefusalReason;
use recommender_store::Reason;
use std::time::Duration;

/// How often a bucket is probed when nothing else wakes the model.
pub const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Whether a pod may reference the store's Secrets: not while one lacks the opt-in label, so no
/// Job is started and the predictor Deployment is left as it is.
pub(super) fn pods_allowed(observed: &Observed) -> bool {
    !observed.store.secret_not_allowed()
}

/// `ModelStoreReachable`: a Secret problem first (nothing can work without it), then a refusal
/// by a predictor of the version it serves or rolls out to (`version`), then a pod that cannot
/// attach the claim, then the probe.
pub(super) fn condition(observed: &Observed, version: Option<&str>) -> Desired {
    let probe = &observed.store;
    if matches!(
        probe,
        StoreProbe::SecretNotAllowed(_) | StoreProbe::SecretUnusable(_)
    ) {
        return probed(probe);
    }
    let troubles = &observed.store_pods;
    let refused = troubles.iter().find_map(|t| match t {
        PodTrouble::Refused { pod, refusal } if Some(refusal.version.as_str()) == version => {
            Some((pod, refusal))
        }
        _ => None,
    });
    if let Some((pod, refusal)) = refused {
        let why = match refusal.reason {
            RefusalReason::Unreachable => Why::Unreachable,
            RefusalReason::BucketMissing => Why::BucketMissing,
            RefusalReason::CredentialsRefused => Why::CredentialsRefused,
            _ => Why::ArtifactRefused,
        };
        return Desired::new(
            why,
            State::False,
            format!(
                "predictor pod {pod} refused {} ({}): {}; the pods of the previous version keep serving",
                refusal.version,
                refusal.reason.as_str(),
                refusal.message
            ),
        );
    }
    let unattached: Vec<String> = troubles
        .iter()
        .filter_map(|t| match t {
            PodTrouble::NotAttachable {
                pod,
                reason,
                message,
            } => Some(format!(
                "pod {pod} cannot attach the claim ({reason}): {message}"
            )),
            PodTrouble::Refused { .. } => None,
        })
        .collect();
    if !unattached.is_empty() {
        return Desired::new(Why::ClaimNotAttachable, State::False, unattached.join("; "));
    }
    probed(probe)
}

/// What the probe alone says.
fn probed(probe: &StoreProbe) -> Desired {
    match probe {
        StoreProbe::Claim => Desired::new(
            Why::Claim,
            State::True,
            "the store is a claim, which the pods mount; none reports a problem attaching it",
        ),
        StoreProbe::Reachable => Desired::new(
            Why::Reachable,
            State::True,
            "a listing of the model's folder succeeded",
        ),
        StoreProbe::Failed(reason, words) => {
            let why = match reason {
                Reason::Unreachable => Why::Unreachable,
                Reason::BucketMissing => Why::BucketMissing,
                Reason::CredentialsRefused => Why::CredentialsRefused,
                _ => Why::StoreFailed,
            };
            Desired::new(why, State::False, words.clone())
        }
        StoreProbe::SecretNotAllowed(why) => {
            Desired::new(Why::SecretNotAllowed, State::False, why.clone())
        }
        StoreProbe::SecretUnusable(why) => {
            Desired::new(Why::SecretUnusable, State::False, why.clone())
        }
    }
}

/// When to look at the store again: a bucket on the probe's interval (labelling a Secret or
/// fixing the server wakes nothing), and pods in trouble until they are not.
pub(super) fn next_look(observed: &Observed) -> Option<Duration> {
    let probed = !matches!(observed.store, StoreProbe::Claim);
    (probed || !observed.store_pods.is_empty()).then_some(STORE_PROBE_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::fixtures::{file_spec, model};
    use crate::observe::Observed;
    use recommender_contract::refusal::Refusal;

    fn observed(
        m: &crate::crd::RecommenderModel,
        store: StoreProbe,
        pods: Vec<PodTrouble>,
    ) -> Observed<'_> {
        Observed {
            store,
            store_pods: pods,
            ..crate::decide::fixtures::observe(m, Vec::new(), None)
        }
    }

    fn refused(version: &str, reason: RefusalReason) -> PodTrouble {
        PodTrouble::Refused {
            pod: "movies-predictor-7d-x".into(),
            refusal: Refusal {
                format: 1,
                reason,
                version: version.into(),
                artifact: format!("s3://models/movies/{version}.model"),
                message: "its sha256 is 05…, expected 32…".into(),
            },
        }
    }

    fn said(d: &Desired) -> (&str, &str) {
        (d.reason.as_str(), d.status.as_str())
    }

    #[test]
    fn the_probe_says_what_the_server_said() {
        let m = model(file_spec(), None);
        for (probe, want) in [
            (StoreProbe::Claim, ("Claim", "True")),
            (StoreProbe::Reachable, ("Reachable", "True")),
            (
                StoreProbe::Failed(Reason::Unreachable, "Connection refused".into()),
                ("Unreachable", "False"),
            ),
            (
                StoreProbe::Failed(Reason::BucketMissing, "NoSuchBucket".into()),
                ("BucketMissing", "False"),
            ),
            (
                StoreProbe::Failed(Reason::CredentialsRefused, "InvalidAccessKeyId".into()),
                ("CredentialsRefused", "False"),
            ),
            (
                StoreProbe::Failed(Reason::ReadOnly, "AccessDenied".into()),
                ("StoreFailed", "False"),
            ),
            (
                StoreProbe::SecretNotAllowed("not labelled".into()),
                ("SecretNotAllowed", "False"),
            ),
            (
                StoreProbe::SecretUnusable("no key".into()),
                ("SecretUnusable", "False"),
            ),
        ] {
            let o = observed(&m, probe.clone(), Vec::new());
            let d = condition(&o, Some("v1"));
            assert_eq!(said(&d), want, "{probe:?}");
            if let StoreProbe::Failed(_, words) = &probe {
                assert_eq!(&d.message, words, "the server's words");
            }
        }
    }

    #[test]
    fn a_refusal_of_the_version_rolled_out_names_the_pod_and_keeps_the_old_serving() {
        let m = model(file_spec(), None);
        let o = observed(
            &m,
            StoreProbe::Reachable,
            vec![
                refused("v1", RefusalReason::Corrupt),
                refused("v2", RefusalReason::Corrupt),
            ],
        );
        let d = condition(&o, Some("v2"));
        assert_eq!(said(&d), ("ArtifactRefused", "False"));
        assert_eq!(
            d.message,
            "predictor pod movies-predictor-7d-x refused v2 (Corrupt): its sha256 is 05…, \
             expected 32…; the pods of the previous version keep serving"
        );
        let o = observed(
            &m,
            StoreProbe::Reachable,
            vec![refused("v1", RefusalReason::Corrupt)],
        );
        assert_eq!(
            said(&condition(&o, Some("v2"))),
            ("Reachable", "True"),
            "an old refusal"
        );
        let o = observed(
            &m,
            StoreProbe::Reachable,
            vec![refused("v2", RefusalReason::CredentialsRefused)],
        );
        assert_eq!(
            said(&condition(&o, Some("v2"))),
            ("CredentialsRefused", "False")
        );
    }

    #[test]
    fn a_pod_that_cannot_attach_the_claim_is_named() {
        let m = model(file_spec(), None);
        let o = observed(
            &m,
            StoreProbe::Claim,
            vec![PodTrouble::NotAttachable {
                pod: "movies-predictor-7d-y".into(),
                reason: "FailedAttachVolume".into(),
                message: "Multi-Attach error for volume \"pv\" Volume is already used by pod(s) movies-train-3-z".into(),
            }],
        );
        let d = condition(&o, Some("v1"));
        assert_eq!(said(&d), ("ClaimNotAttachable", "False"));
        assert_eq!(
            d.message,
            "pod movies-predictor-7d-y cannot attach the claim (FailedAttachVolume): Multi-Attach \
             error for volume \"pv\" Volume is already used by pod(s) movies-train-3-z"
        );
        assert_eq!(next_look(&o), Some(STORE_PROBE_INTERVAL));
        assert_eq!(
            next_look(&observed(&m, StoreProbe::Claim, Vec::new())),
            None
        );
        assert!(!pods_allowed(&observed(
            &m,
            StoreProbe::SecretNotAllowed("x".into()),
            Vec::new()
        )));
    }
}
