//! `recommender-trainer`: train, evaluate, score, tune hyperparameters or run one trial of a
//! search, generate ratings, prune the model store or print the run history. See `--help`.

mod cli;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let tty = std::io::stderr().is_terminal();
    init_logging(tty);
    match args.command {
        cli::Command::Train(a) => cli::train(a, true, tty),
        cli::Command::Evaluate(a) => cli::train(a, false, tty),
        cli::Command::Score(a) => cli::score_command(a),
        cli::Command::Generate(g) => cli::generate(g),
        cli::Command::Prune(p) => cli::prune(p),
        cli::Command::History(h) => cli::history(h),
        cli::Command::Trial(t) => cli::trial(t),
        cli::Command::Tune(t) => cli::tune(t, tty),
    }
}

fn init_logging(tty: bool) {
    use tracing_subscriber::EnvFilter;
    // On a terminal the progress bars carry the news, so only warnings are logged there.
    let default = if tty { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(tty)
        .init();
}
