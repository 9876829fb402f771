//! Where the store is: a directory or an S3 bucket, parsed from flags with errors that name the
//! flag and say why. The access key pair comes from the environment only (a Secret's keys
//! injected as `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`), never from a flag, and it prints
//! as `<redacted>` everywhere.

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

/// The region signed into requests when none is given: what S3-compatible servers expect and
/// KServe's default.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A store's settings. [`StoreArgs::config`] builds them from flags and checks every value; code
/// that fills one in by hand must keep to the same rules.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A directory, the PersistentVolumeClaim's mount (e.g. `/models/<model>`).
    Local {
        root: PathBuf,
    },
    S3(Box<S3Config>),
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `None`: Amazon S3 itself (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<Url>,
    pub bucket: String,
    /// Keys live under `<prefix>/`; empty for the whole bucket. No leading or trailing `/`.
    pub prefix: String,
    pub region: String,
    /// `http://host/bucket/key` rather than `http://bucket.host/key`: what most self-hosted
    /// servers (SeaweedFS, MinIO, Ceph RGW without wildcard DNS) need.
    pub path_style: bool,
    pub credentials: Credentials,
    /// PEM bundle trusted for the endpoint's certificate, besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl StoreConfig {
    /// Where `key` lives, for reports and records: the file's path in a directory,
    /// `s3://BUCKET/PREFIX/KEY` in a bucket (the endpoint is the store's description, and no
    /// credential is ever part of either).
    pub fn location(&self, key: &str) -> String {
        match self {
            Self::Local { root } => root.join(key).display().to_string(),
            Self::S3(s3) if s3.prefix.is_empty() => format!("s3://{}/{key}", s3.bucket),
            Self::S3(s3) => format!("s3://{}/{}/{key}", s3.bucket, s3.prefix),
        }
    }
}

impl S3Config {
    /// Plain HTTP only when the endpoint says so; Amazon S3 is always HTTPS.
    pub fn allow_http(&self) -> bool {
        self.endpoint.as_ref().is_some_and(|e| e.scheme() == "http")
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { root } => write!(f, "directory {}", root.display()),
            Self::S3(s3) => fmt::Display::fmt(s3, f),
        }
    }
}

impl fmt::Display for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        match &self.endpoint {
            Some(endpoint) => write!(f, " at {}", endpoint.as_str().trim_end_matches('/'))?,
            None => write!(f, " on Amazon S3")?,
        }
        write!(f, " (region {}", self.region)?;
        if self.path_style {
            write!(f, ", path-style")?;
        }
        write!(f, ")")
    }
}

// Debug is Display plus the credentials' placeholder: nothing secret in either.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { root } => f.debug_struct("Local").field("root", root).finish(),
            Self::S3(s3) => fmt::Debug::fmt(s3, f),
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// An access key pair. Neither half is ever printed: `Debug` shows `<redacted>`, and there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    pub const ACCESS_KEY_ID_ENV: &'static str = "AWS_ACCESS_KEY_ID";
    pub const SECRET_ACCESS_KEY_ENV: &'static str = "AWS_SECRET_ACCESS_KEY";

    pub fn new(access_key_id: String, secret_access_key: String) -> Result<Self, ConfigError> {
        if access_key_id.trim().is_empty() {
            return Err(ConfigError::bare(Self::ACCESS_KEY_ID_ENV, "is empty"));
        }
        if secret_access_key.trim().is_empty() {
            return Err(ConfigError::bare(Self::SECRET_ACCESS_KEY_ENV, "is empty"));
        }
        Ok(Self {
            access_key_id,
            secret_access_key,
        })
    }

    /// From the process environment, where a Secret's keys are injected.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any lookup of the two variable names (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name).ok_or_else(|| {
                ConfigError::bare(name, "is not set (the S3 store takes its key pair from the environment, e.g. from a Secret)")
            })
        };
        Self::new(
            get(Self::ACCESS_KEY_ID_ENV)?,
            get(Self::SECRET_ACCESS_KEY_ENV)?,
        )
    }

    pub(crate) fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// A setting that cannot be used: which one, the value given (never for secrets), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}{}: {why}", .value.as_ref().map(|v| format!(" {v:?}")).unwrap_or_default())]
pub struct ConfigError {
    pub field: &'static str,
    pub value: Option<String>,
    pub why: String,
}

impl ConfigError {
    fn new(field: &'static str, value: &str, why: impl Into<String>) -> Self {
        Self {
            field,
            value: Some(value.to_string()),
            why: why.into(),
        }
    }

    /// Without the value: for secrets, absent values, and flags that do not apply.
    fn bare(field: &'static str, why: impl Into<String>) -> Self {
        Self {
            field,
            value: None,
            why: why.into(),
        }
    }
}

/// The store's flags, for a binary's `#[command(flatten)]`. `--store` names the store; the
/// others apply to `s3://` stores only and are refused with a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct StoreArgs {
    /// Where models are kept: a directory (the claim's mount, e.g. /models/NAME) or
    /// s3://BUCKET[/PREFIX]. The S3 key pair comes from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long = "store", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    /// The S3 endpoint, http:// or https:// (default: Amazon S3 in --store-region).
    #[arg(long = "store-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// The region signed into S3 requests [default: us-east-1].
    #[arg(long = "store-region", value_name = "REGION")]
    pub region: Option<String>,
    /// Path-style S3 requests (http://host/bucket/key), as self-hosted servers need.
    #[arg(long = "store-path-style")]
    pub path_style: bool,
    /// A PEM bundle trusted for the S3 endpoint's certificate, besides the system's roots.
    #[arg(long = "store-ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl StoreArgs {
    /// The checked settings, with the key pair from the process environment.
    pub fn config(&self) -> Result<StoreConfig, ConfigError> {
        self.config_with(Credentials::from_env)
    }

    /// As [`config`](Self::config), with the key pair from `credentials` (called for S3 only).
    pub fn config_with(
        &self,
        credentials: impl FnOnce() -> Result<Credentials, ConfigError>,
    ) -> Result<StoreConfig, ConfigError> {
        let store = self.store.as_deref().ok_or_else(|| {
            ConfigError::bare("--store", "is required (a directory or s3://BUCKET/PREFIX)")
        })?;
        match store.strip_prefix("s3://") {
            Some(rest) => self.s3(store, rest, credentials()?),
            None => {
                let s3_only = [
                    ("--store-endpoint", self.endpoint.is_some()),
                    ("--store-region", self.region.is_some()),
                    ("--store-path-style", self.path_style),
                    ("--store-ca-file", self.ca_file.is_some()),
                ];
                if let Some((flag, _)) = s3_only.iter().find(|(_, given)| *given) {
                    return Err(ConfigError::bare(
                        flag,
                        format!(
                            "applies to s3:// stores only, and --store {store:?} is a directory"
                        ),
                    ));
                }
                local_root(store).map(|root| StoreConfig::Local { root })
            }
        }
    }

    fn s3(
        &self,
        store: &str,
        rest: &str,
        credentials: Credentials,
    ) -> Result<StoreConfig, ConfigError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(store, bucket)?;
        let prefix = check_prefix(store, prefix)?;
        let endpoint = self.endpoint.as_deref().map(check_endpoint).transpose()?;
        let region = match self.region.as_deref() {
            Some(region) => check_region(region)?,
            None => DEFAULT_REGION.to_string(),
        };
        if let Some(url) = &endpoint
            && !self.path_style
            && !matches!(url.host(), Some(url::Host::Domain(_)))
        {
            return Err(ConfigError::new(
                "--store-endpoint",
                url.as_str(),
                "is an IP address, which cannot carry the bucket in its host name: add --store-path-style",
            ));
        }
        if let Some(ca) = &self.ca_file
            && endpoint.as_ref().is_some_and(|e| e.scheme() == "http")
        {
            return Err(ConfigError::new(
                "--store-ca-file",
                &ca.display().to_string(),
                "is for an https:// endpoint, and --store-endpoint is http://",
            ));
        }
        Ok(StoreConfig::S3(Box::new(S3Config {
            endpoint,
            bucket: bucket.to_string(),
            prefix,
            region,
            path_style: self.path_style,
            credentials,
            ca_file: self.ca_file.clone(),
        })))
    }
}

fn local_root(store: &str) -> Result<PathBuf, ConfigError> {
    let path = match store.strip_prefix("file://") {
        Some(path) => path,
        None if store.contains("://") => {
            return Err(ConfigError::new(
                "--store",
                store,
                "is neither a directory nor s3://BUCKET/PREFIX (other schemes are not enabled)",
            ));
        }
        None => store,
    };
    if !Path::new(path).is_absolute() {
        return Err(ConfigError::new(
            "--store",
            store,
            "a directory must be an absolute path",
        ));
    }
    Ok(PathBuf::from(path))
}

/// Amazon's bucket naming rules (the common subset every S3-compatible server accepts).
fn check_bucket(store: &str, bucket: &str) -> Result<(), ConfigError> {
    let why = if bucket.is_empty() {
        Some("names no bucket (s3://BUCKET/PREFIX)")
    } else if !(3..=63).contains(&bucket.len()) {
        Some("the bucket name must be 3 to 63 characters long")
    } else if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        Some("the bucket name may hold lowercase letters, digits, '.' and '-' only")
    } else if !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("the bucket name must begin and end with a letter or digit")
    } else {
        None
    };
    match why {
        Some(why) => Err(ConfigError::new("--store", store, why)),
        None => Ok(()),
    }
}

fn check_prefix(store: &str, prefix: &str) -> Result<String, ConfigError> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(String::new());
    }
    crate::key::check(prefix)
        .map_err(|why| ConfigError::new("--store", store, format!("the prefix {why}")))?;
    Ok(prefix.to_string())
}

fn check_endpoint(endpoint: &str) -> Result<Url, ConfigError> {
    let fail = |why: &str| ConfigError::new("--store-endpoint", endpoint, why);
    let url = Url::parse(endpoint).map_err(|e| fail(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Also keeps a key pair pasted into the URL out of every message printed from here on.
        return Err(ConfigError::bare(
            "--store-endpoint",
            "must not hold a user or password: the key pair comes from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail("names no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(fail(
            "must be scheme://host[:port] only (the bucket and prefix go in --store)",
        ));
    }
    Ok(url)
}

fn check_region(region: &str) -> Result<String, ConfigError> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ConfigError::new(
            "--store-region",
            region,
            "must be lowercase letters, digits and '-' (e.g. us-east-1)",
        ));
    }
    Ok(region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Result<Credentials, ConfigError> {
        Credentials::new("AKIDEXAMPLE".into(), "wJalrXUtnFEMI/K7MDENG".into())
    }

    fn args(store: &str) -> StoreArgs {
        StoreArgs {
            store: Some(store.into()),
            ..StoreArgs::default()
        }
    }

    fn s3(config: StoreConfig) -> S3Config {
        match config {
            StoreConfig::S3(s3) => *s3,
            other => panic!("expected S3, got {other:?}"),
        }
    }

    #[test]
    fn a_directory_is_local() {
        assert_eq!(
            args("/models/m").config_with(keys).unwrap(),
            StoreConfig::Local {
                root: "/models/m".into()
            }
        );
        assert_eq!(
            args("file:///models/m").config_with(keys).unwrap(),
            StoreConfig::Local {
                root: "/models/m".into()
            }
        );
        let err = args("models/m").config_with(keys).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"--store "models/m": a directory must be an absolute path"#
        );
    }

    #[test]
    fn a_location_names_the_object_and_nothing_secret() {
        assert_eq!(
            args("/models/m")
                .config_with(keys)
                .unwrap()
                .location("runs/v1.json"),
            "/models/m/runs/v1.json"
        );
        let mut a = args("s3://models-bucket/team/recs/");
        a.endpoint = Some("http://127.0.0.1:58333".into());
        a.path_style = true;
        assert_eq!(
            a.config_with(keys).unwrap().location("v3.model"),
            "s3://models-bucket/team/recs/v3.model"
        );
        assert_eq!(
            args("s3://models-bucket")
                .config_with(keys)
                .unwrap()
                .location("v3.model"),
            "s3://models-bucket/v3.model"
        );
    }

    #[test]
    fn a_directory_takes_no_credentials() {
        let config = args("/models/m")
            .config_with(|| panic!("credentials read for a directory"))
            .unwrap();
        assert!(matches!(config, StoreConfig::Local { .. }));
    }

    #[test]
    fn s3_fields_and_defaults() {
        let mut a = args("s3://models-bucket/team/recs/");
        a.endpoint = Some("http://127.0.0.1:58333".into());
        a.path_style = true;
        let c = s3(a.config_with(keys).unwrap());
        assert_eq!(c.bucket, "models-bucket");
        assert_eq!(c.prefix, "team/recs");
        assert_eq!(c.region, DEFAULT_REGION);
        assert!(c.path_style && c.allow_http());
        assert_eq!(
            StoreConfig::S3(Box::new(c)).to_string(),
            "s3://models-bucket/team/recs at http://127.0.0.1:58333 (region us-east-1, path-style)"
        );

        let mut a = args("s3://models-bucket");
        a.region = Some("eu-west-3".into());
        let c = s3(a.config_with(keys).unwrap());
        assert_eq!(
            (c.prefix.as_str(), c.region.as_str(), c.allow_http()),
            ("", "eu-west-3", false)
        );
        assert_eq!(
            c.to_string(),
            "s3://models-bucket on Amazon S3 (region eu-west-3)"
        );
    }

    #[test]
    fn https_endpoints_refuse_plain_http() {
        let mut a = args("s3://bucket");
        a.endpoint = Some("https://minio.storage.svc:9000".into());
        a.ca_file = Some("/etc/store-ca/ca.crt".into());
        let c = s3(a.config_with(keys).unwrap());
        assert!(!c.allow_http());
        assert_eq!(
            c.ca_file.as_deref(),
            Some(Path::new("/etc/store-ca/ca.crt"))
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_the_reason() {
        let cases: &[(StoreArgs, &str)] = &[
            (
                StoreArgs::default(),
                "--store: is required (a directory or s3://BUCKET/PREFIX)",
            ),
            (
                args("s3://"),
                r#"--store "s3://": names no bucket (s3://BUCKET/PREFIX)"#,
            ),
            (
                args("s3://ab"),
                r#"--store "s3://ab": the bucket name must be 3 to 63 characters long"#,
            ),
            (
                args("s3://My_Bucket/x"),
                r#"--store "s3://My_Bucket/x": the bucket name may hold lowercase letters, digits, '.' and '-' only"#,
            ),
            (
                args("s3://-bucket"),
                r#"--store "s3://-bucket": the bucket name must begin and end with a letter or digit"#,
            ),
            (
                args("s3://bucket/a//b"),
                r#"--store "s3://bucket/a//b": the prefix has an empty segment"#,
            ),
            (
                args("s3://bucket/a/../b"),
                r#"--store "s3://bucket/a/../b": the prefix has a segment "..""#,
            ),
            (
                args("gs://bucket"),
                r#"--store "gs://bucket": is neither a directory nor s3://BUCKET/PREFIX (other schemes are not enabled)"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("http://x:1".into()),
                    ..args("/models/m")
                },
                r#"--store-endpoint: applies to s3:// stores only, and --store "/models/m" is a directory"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("ftp://host".into()),
                    ..args("s3://bucket")
                },
                r#"--store-endpoint "ftp://host": the scheme must be http or https"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("host:9000".into()),
                    ..args("s3://bucket")
                },
                r#"--store-endpoint "host:9000": the scheme must be http or https"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("http://host:9000/bucket".into()),
                    ..args("s3://bucket")
                },
                r#"--store-endpoint "http://host:9000/bucket": must be scheme://host[:port] only (the bucket and prefix go in --store)"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("http://[::1".into()),
                    ..args("s3://bucket")
                },
                r#"--store-endpoint "http://[::1": is not a URL (invalid IPv6 address)"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("http://10.250.0.1:58333".into()),
                    ..args("s3://bucket")
                },
                r#"--store-endpoint "http://10.250.0.1:58333/": is an IP address, which cannot carry the bucket in its host name: add --store-path-style"#,
            ),
            (
                StoreArgs {
                    region: Some("US East".into()),
                    ..args("s3://bucket")
                },
                r#"--store-region "US East": must be lowercase letters, digits and '-' (e.g. us-east-1)"#,
            ),
            (
                StoreArgs {
                    endpoint: Some("http://h:1".into()),
                    path_style: true,
                    ca_file: Some("/ca.pem".into()),
                    ..args("s3://bucket")
                },
                r#"--store-ca-file "/ca.pem": is for an https:// endpoint, and --store-endpoint is http://"#,
            ),
        ];
        for (a, want) in cases {
            assert_eq!(a.config_with(keys).unwrap_err().to_string(), *want, "{a:?}");
        }
    }

    #[test]
    fn a_key_pair_in_the_endpoint_is_refused_without_repeating_it() {
        let a = StoreArgs {
            endpoint: Some("https://AKID:hunter2@host".into()),
            ..args("s3://bucket")
        };
        let err = a.config_with(keys).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("must not hold a user or password"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("AKID"),
            "{text}"
        );
    }

    #[test]
    fn credentials_come_from_the_environment_names() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = Credentials::from_lookup(env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AWS_ACCESS_KEY_ID: is not set (the S3 store takes its key pair from the environment, e.g. from a Secret)"
        );
        let err = Credentials::from_lookup(env(&[("AWS_ACCESS_KEY_ID", "id")])).unwrap_err();
        assert_eq!(err.field, "AWS_SECRET_ACCESS_KEY");
        let err = Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", " "),
        ]))
        .unwrap_err();
        assert_eq!(err.to_string(), "AWS_SECRET_ACCESS_KEY: is empty");
        let c = Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key()), ("id", "s"));
    }

    #[test]
    fn credentials_never_print() {
        let mut a = args("s3://bucket/p");
        a.endpoint = Some("http://127.0.0.1:1".into());
        a.path_style = true;
        let secret = "wJalrXUtnFEMI/K7MDENG";
        let config = a.config_with(keys).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{config:#?}"),
            config.to_string(),
            format!("{a:?}"),
        ] {
            assert!(
                !text.contains(secret) && !text.contains("AKIDEXAMPLE"),
                "{text}"
            );
        }
        assert!(format!("{config:?}").contains("Credentials(<redacted>)"));
    }
}
