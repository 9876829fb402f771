//! Prints the `RecommenderModel` CRD as YAML (what `crds/recommendermodels.yaml` holds), or with
//! `--vocabulary` the words alerts can match as JSON (condition types and their reasons, event
//! and run reasons), which `charts/tests/vocabulary.py` checks the chart's rules against.

use recommender_operator::crd::RecommenderModel;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => match RecommenderModel::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("crdgen: cannot serialise the CRD: {err}");
                ExitCode::FAILURE
            }
        },
        [flag] if flag == "--vocabulary" => {
            println!("{:#}", recommender_operator::vocabulary::vocabulary());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: crdgen [--vocabulary]");
            ExitCode::from(2)
        }
    }
}
