//! `kubectl` and `helm` from the project's build cache (PATH set by tests/all.sh), against
//! KUBECONFIG.

use std::process::Command;

/// Runs `program args...`; `(succeeded, stdout + stderr)`.
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it on PATH?): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn kubectl(args: &[&str]) -> (bool, String) {
    run("kubectl", args)
}

pub fn helm(args: &[&str]) -> (bool, String) {
    run("helm", args)
}
