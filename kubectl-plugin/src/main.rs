//! `kubectl-recommender`: copy it onto PATH and kubectl runs it as `kubectl recommender`.
//! Exit codes: 0 done, 1 the command failed (one line on stderr says why), 2 a usage error.

use clap::Parser;
use kubectl_recommender::cli::Cli;
use kubectl_recommender::commands::{self, Context};
use kubectl_recommender::connect;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let done = runtime.block_on(async {
        let (client, namespace) = connect::client(&cli).await?;
        let ctx = Context {
            client,
            namespace,
            clock: jiff::Timestamp::now,
            redraw_in_place: std::io::stdout().is_terminal(),
        };
        let mut out = std::io::stdout().lock();
        commands::run(&ctx, &cli.command, &mut out).await?;
        out.flush()?;
        Ok::<_, kubectl_recommender::Error>(())
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// One line, whatever the API server's message held, so scripts can read it.
fn fail(message: &str) -> ExitCode {
    let line: Vec<&str> = message.split_whitespace().collect();
    eprintln!("error: {}", line.join(" "));
    ExitCode::FAILURE
}
