//! The command line, as kubectl passes it on: `kubectl recommender status movies -n shop` runs
//! `kubectl-recommender status movies -n shop`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
Reads and steers RecommenderModels (recommender.dev/v1alpha1): a status tree with the rollout in \
progress, the run history, and the manual actions. Every action is an annotation or a spec field \
the operator honours, so RBAC on recommendermodels decides who may take it.

Install by copying the binary onto PATH; kubectl then runs it as `kubectl recommender`. It uses \
your kubeconfig like kubectl: $KUBECONFIG if set, else ~/.kube/config, with its current context \
and namespace.";

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-recommender",
    bin_name = "kubectl recommender",
    version,
    about = "Reads and steers RecommenderModels: status, history, rollouts, retrain, rollback.",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    /// The model's namespace; the kubeconfig context's namespace when absent.
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use instead of the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Act as this user (impersonation, as kubectl's --as): what RBAC lets them do.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The model as a tree: phase, serving version and its figures, predictor, online figures,
    /// the rollout in progress (or the last one) and the conditions.
    Status {
        name: String,
        /// Redraw whenever the model changes, until interrupted.
        #[arg(short, long)]
        watch: bool,
        /// Print the status in this format instead of the tree.
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// The recent training runs (status.history), oldest first.
    History { name: String },
    /// Skip the running rollout's remaining steps and promote its candidate.
    Promote { name: String },
    /// Abort the running rollout: the stable model serves everyone again.
    Abort { name: String },
    /// Hold the rollout's stage, step and share (spec.rollout.paused).
    Pause { name: String },
    /// Let a paused rollout go on.
    Resume { name: String },
    /// Request one training run now (the recommender.dev/retrain annotation).
    Retrain { name: String },
    /// Serve an earlier promoted version (spec.pinnedVersion), or with --clear the newest again.
    Rollback {
        name: String,
        /// A version from status.models, e.g. v3.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        version: Option<String>,
        /// Remove the pin: the newest promoted version serves.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The status object as JSON (one document per change with --watch).
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-recommender").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn namespace_goes_anywhere_on_the_line() {
        let cli = parse(&["status", "movies", "-n", "shop", "-w", "-o", "json"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        assert_eq!(
            cli.command,
            Command::Status {
                name: "movies".into(),
                watch: true,
                output: Some(Output::Json)
            }
        );
        let cli = parse(&["-n", "shop", "history", "movies"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn rollback_takes_a_version_or_clear_but_not_both() {
        let cli = parse(&["rollback", "movies", "v3"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Rollback {
                name: "movies".into(),
                version: Some("v3".into()),
                clear: false
            }
        );
        assert!(parse(&["rollback", "movies", "--clear"]).is_ok());
        let neither = parse(&["rollback", "movies"]).unwrap_err();
        assert_eq!(neither.kind(), ErrorKind::MissingRequiredArgument);
        let both = parse(&["rollback", "movies", "v3", "--clear"]).unwrap_err();
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        // Usage errors exit 2, as kubectl's own do.
        assert_eq!(both.exit_code(), 2);
    }

    #[test]
    fn unknown_output_formats_are_refused() {
        let err = parse(&["status", "movies", "-o", "yaml"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }
}
