//! Each command's requests: a read, a check, one merge patch. Nothing is written before the
//! check passes, and each command prints one line saying what it did.

use crate::actions::{self, Request, RolloutAction};
use crate::cli::Command;
use crate::error::{Error, Result, Target, Verb};
use crate::render;
use crate::watch;
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use recommender_operator::crd::{RecommenderModel, RolloutStage, RolloutStatus};
use recommender_operator::labels::RETRAIN_ANNOTATION;
use serde_json::Value;
use std::io::Write;

/// The field manager of the plugin's patches: `managedFields` shows who pinned or paused.
pub const FIELD_MANAGER: &str = "kubectl-recommender";

pub struct Context {
    pub client: Client,
    pub namespace: String,
    /// The time ages are measured from and retrain requests are named after.
    pub clock: fn() -> Timestamp,
    /// `status --watch` clears the screen before each redraw (a terminal), or separates the
    /// drawings with a blank line (a pipe or a file).
    pub redraw_in_place: bool,
}

impl Context {
    fn api(&self) -> Api<RecommenderModel> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn target(&self, name: &str) -> Target {
        Target {
            namespace: self.namespace.clone(),
            name: name.into(),
        }
    }

    pub(crate) async fn get(&self, target: &Target) -> Result<RecommenderModel> {
        self.api()
            .get(&target.name)
            .await
            .map_err(|e| Error::api(Verb::Get, target, e))
    }

    /// A JSON merge patch of the model (metadata or spec; never the status, the operator's).
    async fn patch(&self, target: &Target, patch: &Value) -> Result<RecommenderModel> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        self.api()
            .patch(&target.name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| Error::api(Verb::Patch, target, e))
    }
}

pub async fn run(ctx: &Context, command: &Command, out: &mut impl Write) -> Result<()> {
    match command {
        Command::Status {
            name,
            watch: false,
            output,
        } => {
            let model = ctx.get(&ctx.target(name)).await?;
            out.write_all(render::status_text(&model, *output, (ctx.clock)()).as_bytes())?;
        }
        Command::Status {
            name,
            watch: true,
            output,
        } => watch::status(ctx, &ctx.target(name), *output, out).await?,
        Command::History { name } => {
            let model = ctx.get(&ctx.target(name)).await?;
            let text = render::history::table_of(model.status.as_ref(), (ctx.clock)());
            out.write_all(text.as_bytes())?;
        }
        Command::Retrain { name } => retrain(ctx, &ctx.target(name), out).await?,
        Command::Rollback {
            name,
            version,
            clear,
        } => {
            let target = ctx.target(name);
            match version.as_deref() {
                Some(version) if !clear => rollback(ctx, &target, version, out).await?,
                _ => clear_pin(ctx, &target, out).await?,
            }
        }
        Command::Promote { name } => {
            request(ctx, &ctx.target(name), RolloutAction::Promote, out).await?
        }
        Command::Abort { name } => {
            request(ctx, &ctx.target(name), RolloutAction::Abort, out).await?
        }
        Command::Pause { name } => set_paused(ctx, &ctx.target(name), true, out).await?,
        Command::Resume { name } => set_paused(ctx, &ctx.target(name), false, out).await?,
    }
    Ok(())
}

async fn request(
    ctx: &Context,
    target: &Target,
    action: RolloutAction,
    out: &mut impl Write,
) -> Result<()> {
    let model = ctx.get(target).await?;
    let annotation = action.annotation();
    let rollout = match actions::rollout_request(target, &model, action)? {
        Request::Pending(rollout) => {
            writeln!(
                out,
                "{target}: {} of rollout {} already requested ({annotation}); waiting for the \
                 operator",
                action.verb(),
                rollout.id
            )?;
            return Ok(());
        }
        Request::Write(rollout) => rollout,
    };
    ctx.patch(target, &actions::annotation(annotation, &rollout.id))
        .await?;
    let then = match action {
        RolloutAction::Promote => format!(
            "the operator skips the remaining steps and {} serves everyone",
            rollout.candidate_version
        ),
        RolloutAction::Abort => format!(
            "the operator sets the share to 0 and {} serves everyone again",
            rollout.stable_version
        ),
    };
    writeln!(
        out,
        "{target}: {} of rollout {} ({}) requested ({annotation}); {then}",
        action.verb(),
        rollout.id,
        position(&model, rollout)
    )?;
    Ok(())
}

/// Where a running rollout is, in a few words: `Canary step 2/3 at 25.0%`.
fn position(model: &RecommenderModel, r: &RolloutStatus) -> String {
    match r.stage {
        RolloutStage::Canary => format!(
            "Canary step {}/{} at {}",
            r.step + 1,
            model.spec.rollout.canary.steps.len(),
            render::format::percent(r.share)
        ),
        stage => stage.to_string(),
    }
}

/// The rollout in progress, if one is.
fn running(model: &RecommenderModel) -> Option<&RolloutStatus> {
    model
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .filter(|r| !r.stage.is_terminal())
}

async fn retrain(ctx: &Context, target: &Target, out: &mut impl Write) -> Result<()> {
    let value = actions::retrain_value((ctx.clock)());
    let model = ctx
        .patch(target, &actions::annotation(RETRAIN_ANNOTATION, &value))
        .await?;
    let mut line = format!("{target}: training run requested ({RETRAIN_ANNOTATION}={value})");
    if model.spec.suspend {
        line.push_str("; the model is suspended (spec.suspend): it starts once resumed");
    } else if let Some(run) = model.status.as_ref().and_then(|s| s.runs.active.as_ref()) {
        line.push_str(&format!(
            "; run {} is in flight, the new one follows it",
            run.run
        ));
    }
    writeln!(out, "{line}")?;
    Ok(())
}

async fn rollback(
    ctx: &Context,
    target: &Target,
    version: &str,
    out: &mut impl Write,
) -> Result<()> {
    let model = ctx.get(target).await?;
    actions::check_version(target, model.status.as_ref(), version)?;
    if model.spec.pinned_version.as_deref() == Some(version) {
        writeln!(
            out,
            "{target}: already pinned to {version}, nothing changed"
        )?;
        return Ok(());
    }
    let model = ctx.patch(target, &actions::pin(Some(version))).await?;
    let serving = serving_version(&model);
    let mut line = format!(
        "{target}: pinned to {version} (spec.pinnedVersion); {serving} serves until the \
         predictor has rolled over"
    );
    if let Some(r) = running(&model) {
        line.push_str(&format!(
            "; rollout {} ({}) ends aborted (Pinned)",
            r.id,
            position(&model, r)
        ));
    }
    writeln!(out, "{line}")?;
    Ok(())
}

async fn clear_pin(ctx: &Context, target: &Target, out: &mut impl Write) -> Result<()> {
    let model = ctx.patch(target, &actions::pin(None)).await?;
    let newest = model
        .status
        .as_ref()
        .and_then(|s| s.models.last())
        .map_or("the newest promoted version", |m| m.version.as_str());
    writeln!(
        out,
        "{target}: pin removed; {newest} serves once the predictor has rolled over"
    )?;
    Ok(())
}

async fn set_paused(
    ctx: &Context,
    target: &Target,
    paused: bool,
    out: &mut impl Write,
) -> Result<()> {
    let model = ctx.patch(target, &actions::paused(paused)).await?;
    let what = if paused { "paused" } else { "resumed" };
    let line = match running(&model) {
        Some(r) => format!(
            "{target}: rollout {} {what} at {} (spec.rollout.paused={paused})",
            r.id,
            position(&model, r)
        ),
        None if !model.spec.rollout.progressive() => format!(
            "{target}: spec.rollout.paused={paused}; no rollout is running and \
             spec.rollout.strategy is Immediate, so there is none to hold"
        ),
        None => format!("{target}: spec.rollout.paused={paused}; no rollout is running now"),
    };
    writeln!(out, "{line}")?;
    Ok(())
}

fn serving_version(model: &RecommenderModel) -> String {
    model
        .status
        .as_ref()
        .and_then(|s| s.serving.as_ref())
        .map_or_else(|| "nothing".into(), |m| m.version.clone())
}

#[cfg(test)]
mod tests;
