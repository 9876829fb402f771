//! Prints the `RecommenderModel` CRD as YAML (what `crds/recommendermodels.yaml` holds).

use recommender_operator::crd::RecommenderModel;

fn main() -> std::process::ExitCode {
    match RecommenderModel::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: cannot serialise the CRD: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
