//! `spec.rollout` under `Progressive`, resolved into the settings of the paired test and the
//! guardrails (`recommender_rollout`) and the stages' durations. The schema checks the ranges;
//! this checks them again (objects stored before a schema change) and what the tests themselves
//! refuse, naming the field.

use super::duration;
use crate::crd::{GuardrailSpec, OnInconclusive, RolloutSpec};
use recommender_rollout::canary::Guardrail;
use recommender_rollout::{Guardrails, PairedTest};
use std::time::Duration;

/// Most canary steps.
pub const MAX_STEPS: usize = 10;
/// The largest level a test may be given: above it a "test" decides on noise.
const MAX_LEVEL: f64 = 0.5;

/// A progressive rollout's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub shadow: Stage<PairedTest>,
    pub canary: Stage<Guardrails>,
    /// The canary's steps, shares strictly increasing in (0, 1].
    pub steps: Vec<Step>,
}

/// A stage's test and what its timeout means.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage<T> {
    pub test: T,
    /// The shadow stage's, or each canary step's.
    pub timeout: Duration,
    pub on_inconclusive: OnInconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub share: f64,
    pub min_duration: Duration,
}

pub(super) fn rollout(
    spec: &RolloutSpec,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<Rollout> {
    let s = &spec.shadow;
    let levels = [
        ("spec.rollout.shadow.alpha", s.alpha),
        ("spec.rollout.shadow.beta", s.beta),
    ];
    let mut fine = level_checks(&levels, problem);
    if !(s.margin.is_finite() && s.margin > 0.0) {
        problem(
            "spec.rollout.shadow.margin",
            format!("{} must be above 0", s.margin),
        );
        fine = false;
    }
    if s.min_samples < 2 {
        problem(
            "spec.rollout.shadow.minSamples",
            format!(
                "{} must be at least 2 (a variance needs two)",
                s.min_samples
            ),
        );
        fine = false;
    }
    let minute = Duration::from_secs(60);
    let shadow_timeout = duration(&s.timeout, minute, "spec.rollout.shadow.timeout", problem);
    let c = &spec.canary;
    fine &= guardrail(&c.accuracy, "spec.rollout.canary.accuracy", problem);
    fine &= guardrail(&c.acceptance, "spec.rollout.canary.acceptance", problem);
    fine &= guardrail(&c.latency, "spec.rollout.canary.latency", problem);
    let step_timeout = duration(
        &c.step_timeout,
        minute,
        "spec.rollout.canary.stepTimeout",
        problem,
    );
    let steps = steps(spec, problem);
    let (Some(shadow_timeout), Some(step_timeout), Some(steps)) =
        (shadow_timeout, step_timeout, steps)
    else {
        return None;
    };
    if !fine {
        return None;
    }
    let paired = PairedTest {
        margin: s.margin,
        alpha: s.alpha,
        beta: s.beta,
        min_samples: s.min_samples,
        mixture_sd: None,
    };
    let guard = |g: &GuardrailSpec| Guardrail {
        margin: g.margin,
        alpha: g.alpha,
    };
    let guardrails = Guardrails {
        accuracy: guard(&c.accuracy),
        acceptance: guard(&c.acceptance),
        latency: guard(&c.latency),
        min_feedback: c.min_feedback,
        min_rated_suggestions: c.min_rated_suggestions,
        min_requests: c.min_requests,
    };
    // What the tests refuse on their own, in their words, should the checks above miss any.
    if let Err(why) = paired.check() {
        problem("spec.rollout.shadow", why);
        return None;
    }
    if let Err(why) = guardrails.check() {
        problem("spec.rollout.canary", why);
        return None;
    }
    Some(Rollout {
        shadow: Stage {
            test: paired,
            timeout: shadow_timeout,
            on_inconclusive: s.on_inconclusive,
        },
        canary: Stage {
            test: guardrails,
            timeout: step_timeout,
            on_inconclusive: c.on_inconclusive,
        },
        steps,
    })
}

fn level_checks(
    levels: &[(&'static str, f64)],
    problem: &mut impl FnMut(&'static str, String),
) -> bool {
    let mut fine = true;
    for &(field, level) in levels {
        if !(level > 0.0 && level <= MAX_LEVEL) {
            problem(field, format!("{level} must be in (0, {MAX_LEVEL}]"));
            fine = false;
        }
    }
    fine
}

fn guardrail(
    g: &GuardrailSpec,
    field: &'static str,
    problem: &mut impl FnMut(&'static str, String),
) -> bool {
    let mut fine = true;
    if !(g.margin.is_finite() && g.margin > 0.0) {
        problem(field, format!("margin {} must be above 0", g.margin));
        fine = false;
    }
    if !(g.alpha > 0.0 && g.alpha <= MAX_LEVEL) {
        problem(
            field,
            format!("alpha {} must be in (0, {MAX_LEVEL}]", g.alpha),
        );
        fine = false;
    }
    fine
}

fn steps(spec: &RolloutSpec, problem: &mut impl FnMut(&'static str, String)) -> Option<Vec<Step>> {
    const FIELD: &str = "spec.rollout.canary.steps";
    let given = &spec.canary.steps;
    if given.is_empty() || given.len() > MAX_STEPS {
        problem(
            FIELD,
            format!("{} steps given, 1 to {MAX_STEPS} are allowed", given.len()),
        );
        return None;
    }
    let mut steps = Vec::with_capacity(given.len());
    let mut previous: Option<f64> = None;
    let mut fine = true;
    for (i, step) in given.iter().enumerate() {
        if !(step.share > 0.0 && step.share <= 1.0) {
            problem(
                FIELD,
                format!("[{i}].share {} must be in (0, 1]", step.share),
            );
            fine = false;
        } else if let Some(before) = previous.filter(|p| step.share <= *p) {
            problem(
                FIELD,
                format!(
                    "[{i}].share {} must be above [{}].share {before}: shares strictly increase",
                    step.share,
                    i - 1
                ),
            );
            fine = false;
        }
        previous = Some(step.share);
        match crate::time::parse_go_duration(&step.min_duration) {
            Some(min_duration) => steps.push(Step {
                share: step.share,
                min_duration,
            }),
            None => {
                problem(
                    FIELD,
                    format!(
                        "[{i}].minDuration {:?} is not a duration such as 2m",
                        step.min_duration
                    ),
                );
                fine = false;
            }
        }
    }
    fine.then_some(steps)
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::spec;
    use crate::validate::validate;
    use std::time::Duration;

    const FILE: &str = "source: {file: {path: movies/u.data}}\nmodelStore: {claimName: models}\n";

    fn with(rollout: &str) -> Result<crate::validate::Config, crate::validate::Invalid> {
        validate(&spec(&format!("{FILE}rollout: {rollout}\n")))
    }

    #[test]
    fn progressive_defaults_resolve_and_immediate_ignores_the_settings() {
        let config = with("{strategy: Progressive}").unwrap();
        let r = config.rollout.unwrap();
        assert_eq!(
            (r.shadow.test.margin, r.shadow.test.min_samples),
            (0.02, 200)
        );
        assert_eq!(r.shadow.timeout, Duration::from_secs(1800));
        assert_eq!(r.steps.len(), 3);
        assert_eq!(r.steps[1].share, 0.25);
        assert_eq!(r.steps[1].min_duration, Duration::from_secs(120));
        assert_eq!(r.canary.test.acceptance.margin, 0.10);
        assert_eq!(r.canary.test.min_requests, 200);
        assert_eq!(validate(&spec(FILE)).unwrap().rollout, None);
        let ignored = with("{strategy: Immediate, shadow: {minSamples: 50}}").unwrap();
        assert_eq!(ignored.rollout, None, "Immediate reads no rollout settings");
    }

    #[test]
    fn every_rollout_problem_names_its_field() {
        let cases = [
            (
                "{strategy: Progressive, shadow: {alpha: 0.7}}",
                "spec.rollout.shadow.alpha: 0.7 must be in (0, 0.5]",
            ),
            (
                "{strategy: Progressive, shadow: {beta: 0.0}}",
                "spec.rollout.shadow.beta: 0 must be in (0, 0.5]",
            ),
            (
                "{strategy: Progressive, shadow: {margin: -1.0}}",
                "spec.rollout.shadow.margin: -1 must be above 0",
            ),
            (
                "{strategy: Progressive, shadow: {minSamples: 1}}",
                "spec.rollout.shadow.minSamples: 1 must be at least 2",
            ),
            (
                "{strategy: Progressive, shadow: {timeout: 10s}}",
                "spec.rollout.shadow.timeout: \"10s\" is shorter than the minimum 60s",
            ),
            (
                "{strategy: Progressive, canary: {stepTimeout: soon}}",
                "spec.rollout.canary.stepTimeout: \"soon\" is not a duration",
            ),
            (
                "{strategy: Progressive, canary: {latency: {margin: 0.5, alpha: 0.9}}}",
                "spec.rollout.canary.latency: alpha 0.9 must be in (0, 0.5]",
            ),
            (
                "{strategy: Progressive, canary: {steps: [{share: 0.5}, {share: 0.25}]}}",
                "spec.rollout.canary.steps: [1].share 0.25 must be above [0].share 0.5",
            ),
            (
                "{strategy: Progressive, canary: {steps: [{share: 0.5}, {share: 0.5}]}}",
                "spec.rollout.canary.steps: [1].share 0.5 must be above [0].share 0.5",
            ),
            (
                "{strategy: Progressive, canary: {steps: [{share: 1.5}]}}",
                "spec.rollout.canary.steps: [0].share 1.5 must be in (0, 1]",
            ),
            (
                "{strategy: Progressive, canary: {steps: []}}",
                "spec.rollout.canary.steps: 0 steps given, 1 to 10 are allowed",
            ),
            (
                "{strategy: Progressive, canary: {steps: [{share: 0.1, minDuration: two}]}}",
                "spec.rollout.canary.steps: [0].minDuration \"two\" is not a duration",
            ),
        ];
        for (rollout, expected) in cases {
            let text = with(rollout).unwrap_err().to_string();
            assert!(text.starts_with(expected), "{rollout}: {text}");
        }
        let eleven: Vec<String> = (1..=11)
            .map(|i| format!("{{share: {}}}", i as f64 / 11.0))
            .collect();
        let text = with(&format!(
            "{{strategy: Progressive, canary: {{steps: [{}]}}}}",
            eleven.join(", ")
        ))
        .unwrap_err()
        .to_string();
        assert!(text.contains("11 steps given"), "{text}");
    }
}
