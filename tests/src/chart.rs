//! The chart's previous release, kept as its package in tests/fixtures for the upgrade test.

use std::path::{Path, PathBuf};

/// The previous release of the chart, as `helm package` made it (tests/fixtures; replace it with
/// the outgoing version's package when the chart's version is bumped). A package rather than git
/// history, so a shallow clone runs the test too.
pub const PREVIOUS_CHART: &str = "tests/fixtures/recommender-operator-0.1.0.tgz";

/// A chart's version (Chart.yaml), as numbers to compare.
pub fn chart_version(chart: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version:"))
        .expect("Chart.yaml has a version");
    version
        .trim()
        .split('.')
        .map(|n| n.parse().expect("a numeric version"))
        .collect()
}

/// The previous chart unpacked into `into`; returns its version and folder, after checking that
/// it is older than the chart in the tree.
pub fn previous_chart(repo: &Path, into: &Path) -> (Vec<u64>, PathBuf) {
    let untar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(repo.join(PREVIOUS_CHART))
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(untar.success(), "unpacking {PREVIOUS_CHART}");
    let chart = into.join("recommender-operator");
    let (old, new) = (
        chart_version(&chart),
        chart_version(&repo.join("charts/recommender-operator")),
    );
    assert!(
        old < new,
        "{PREVIOUS_CHART} ({old:?}) is not older than the chart ({new:?})"
    );
    (old, chart)
}
