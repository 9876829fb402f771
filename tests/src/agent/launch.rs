//! How a container of a pod becomes a local process: which binary, which argv, which environment,
//! with container paths mapped to host folders. Everything here is pure so it can be unit-tested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;

/// The binary an image names: `<registry>/<repo>/recommender-trainer:<tag>` → `recommender-trainer`.
pub fn binary_for_image(image: &str) -> Result<String, Error> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last.split(':').next().unwrap_or(last);
    if name.is_empty() {
        return Err(Error::Spec(format!(
            "image {image:?} does not name a binary (expected <anything>/<binary>:<tag>)"
        )));
    }
    Ok(name.to_owned())
}

/// Expands `$(VAR)` references the way the kubelet does: `$$` is a literal `$`, references to
/// unknown variables and unterminated references stay as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str(&rest[pos..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Container paths (mount points, the termination-message file) and the host paths backing them.
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    /// Longest container path first, so nested mounts win over their parents.
    entries: Vec<(String, PathBuf)>,
}

impl PathMap {
    pub fn insert(&mut self, container_path: &str, host: PathBuf) {
        let key = container_path.trim_end_matches('/');
        let key = if key.is_empty() { "/" } else { key };
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_owned(), host));
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
    }

    /// The host path for `value` if it is, or lies under, a mapped container path.
    fn map_path(&self, value: &str) -> Option<String> {
        self.entries.iter().find_map(|(container, host)| {
            let rest = value.strip_prefix(container.as_str())?;
            if rest.is_empty() {
                Some(host.display().to_string())
            } else if rest.starts_with('/') || container == "/" {
                let rest = rest.trim_start_matches('/');
                Some(host.join(rest).display().to_string())
            } else {
                None
            }
        })
    }

    /// Rewrites an argument or env value that starts with a mapped path; `--flag=/path` is
    /// rewritten after the `=` too, since CLIs accept both spellings.
    pub fn rewrite(&self, value: &str) -> String {
        if let Some(mapped) = self.map_path(value) {
            return mapped;
        }
        if let Some((flag, path)) = value.split_once('=')
            && flag.starts_with('-')
            && let Some(mapped) = self.map_path(path)
        {
            return format!("{flag}={mapped}");
        }
        value.to_owned()
    }
}

/// A container ready to be spawned.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The environment as the process sees it (paths already rewritten).
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
}

/// Builds the argv and environment from the container's fields. `env` is the container's
/// resolved environment in container terms (values not yet rewritten).
pub fn build_launch(
    bin_dir: &Path,
    image: &str,
    command: &[String],
    args: &[String],
    env: &BTreeMap<String, String>,
    working_dir: Option<&str>,
    paths: &PathMap,
) -> Result<Launch, Error> {
    let lookup = |name: &str| env.get(name).cloned();
    let mut argv: Vec<String> = command
        .iter()
        .chain(args.iter())
        .map(|a| paths.rewrite(&expand(a, lookup)))
        .collect();
    let program = if command.is_empty() {
        let binary = binary_for_image(image)?;
        let path = bin_dir.join(&binary);
        if !path.is_file() {
            return Err(Error::Spec(format!(
                "image {image:?} runs binary {binary:?}, which is not in {}",
                bin_dir.display()
            )));
        }
        path
    } else {
        let first = argv.remove(0);
        // A command naming one of the project's binaries runs the local build of it.
        let local = Path::new(&first)
            .file_name()
            .map(|name| bin_dir.join(name))
            .filter(|p| p.is_file());
        local.unwrap_or_else(|| PathBuf::from(first))
    };
    let env = env
        .iter()
        .map(|(k, v)| (k.clone(), paths.rewrite(v)))
        .collect();
    Ok(Launch {
        program,
        args: argv,
        env,
        working_dir: working_dir.map(|w| PathBuf::from(paths.rewrite(w))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn image_names_the_binary() {
        assert_eq!(
            binary_for_image("ghcr.io/x/recommender-trainer:1.2").unwrap(),
            "recommender-trainer"
        );
        assert_eq!(
            binary_for_image("local/recommender-sleeper:dev").unwrap(),
            "recommender-sleeper"
        );
        assert_eq!(
            binary_for_image("registry:5000/a/recommender-predictor@sha256:abc").unwrap(),
            "recommender-predictor"
        );
        assert_eq!(binary_for_image("recommender-x").unwrap(), "recommender-x");
        assert!(binary_for_image("registry/:tag").is_err());
    }

    #[test]
    fn expansion_follows_kubelet_rules() {
        let env = vars(&[("POD_IP", "127.1.0.7"), ("EMPTY", "")]);
        let lookup = |n: &str| env.get(n).cloned();
        assert_eq!(expand("$(POD_IP):8080", lookup), "127.1.0.7:8080");
        assert_eq!(expand("a$(EMPTY)b", lookup), "ab");
        assert_eq!(expand("$$(POD_IP)", lookup), "$(POD_IP)");
        assert_eq!(expand("$(MISSING)/x", lookup), "$(MISSING)/x");
        assert_eq!(
            expand("cost $5 and $(POD_IP", lookup),
            "cost $5 and $(POD_IP"
        );
        assert_eq!(expand("trailing $", lookup), "trailing $");
    }

    #[test]
    fn paths_are_rewritten_by_longest_mount_prefix() {
        let mut map = PathMap::default();
        map.insert("/models", PathBuf::from("/state/pvc/ns/store"));
        map.insert("/models/cache/", PathBuf::from("/state/pod/cache"));
        map.insert("/dev/termination-log", PathBuf::from("/state/pod/c.term"));
        assert_eq!(map.rewrite("/models"), "/state/pvc/ns/store");
        assert_eq!(
            map.rewrite("/models/m/v1.model"),
            "/state/pvc/ns/store/m/v1.model"
        );
        assert_eq!(map.rewrite("/models/cache/x"), "/state/pod/cache/x");
        assert_eq!(map.rewrite("/modelsX/a"), "/modelsX/a");
        assert_eq!(
            map.rewrite("--out=/models/a"),
            "--out=/state/pvc/ns/store/a"
        );
        assert_eq!(map.rewrite("a=/models/a"), "a=/models/a");
        assert_eq!(map.rewrite("/dev/termination-log"), "/state/pod/c.term");
        assert_eq!(map.rewrite("relative/models"), "relative/models");
    }

    #[test]
    fn launch_uses_bin_dir_expands_then_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recommender-predictor"), "#!/bin/sh\n").unwrap();
        let mut map = PathMap::default();
        map.insert("/models", PathBuf::from("/host/models"));
        let env = vars(&[
            ("POD_IP", "127.1.0.9"),
            ("MODEL_PATH", "/models/m/v2.model"),
        ]);
        let args = vec![
            "--listen".to_string(),
            "$(POD_IP):8080".to_string(),
            "--model".to_string(),
            "$(MODEL_PATH)".to_string(),
        ];
        let launch = build_launch(
            dir.path(),
            "x/recommender-predictor:dev",
            &[],
            &args,
            &env,
            None,
            &map,
        )
        .unwrap();
        assert_eq!(launch.program, dir.path().join("recommender-predictor"));
        assert_eq!(
            launch.args,
            [
                "--listen",
                "127.1.0.9:8080",
                "--model",
                "/host/models/m/v2.model"
            ]
        );
        assert_eq!(launch.env["MODEL_PATH"], "/host/models/m/v2.model");

        let with_command = build_launch(
            dir.path(),
            "x/other:dev",
            &["/usr/local/bin/recommender-predictor".to_string()],
            &args[..2],
            &env,
            Some("/models"),
            &map,
        )
        .unwrap();
        assert_eq!(
            with_command.program,
            dir.path().join("recommender-predictor")
        );
        assert_eq!(
            with_command.working_dir,
            Some(PathBuf::from("/host/models"))
        );

        let missing = build_launch(
            dir.path(),
            "x/recommender-nope:1",
            &[],
            &[],
            &env,
            None,
            &map,
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("recommender-nope")
        );
    }
}
