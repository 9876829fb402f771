//! What only a directory or only an unreachable S3 store shows: staging files, a byte flipped on
//! disk, a missing directory, a closed port, bad keys, an unreadable CA bundle. The operations
//! every backend shares are in tests/common/contract.rs, run against both.

use super::*;
use crate::Sha256;
use crate::config::{Credentials, StoreArgs};

fn local() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::Local {
        root: dir.path().to_path_buf(),
    })
    .unwrap();
    (dir, store)
}

fn reason<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Reason {
    result.unwrap_err().reason()
}

#[tokio::test]
async fn staging_files_are_never_listed() {
    let (dir, store) = local();
    store
        .put_new("v1/model.bin", Bytes::from_static(b"x"))
        .await
        .unwrap();
    // What a writer that died mid-write leaves behind.
    std::fs::write(dir.path().join("v1/run.json#1"), b"half").unwrap();
    let listed = store.list("v1", 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["v1/model.bin"]
    );
    assert_eq!(reason(store.head("v1/run.json").await), Reason::NotFound);
}

#[tokio::test]
async fn a_flipped_byte_is_refused_with_both_digests() {
    let (dir, store) = local();
    let written = store
        .put_new("v1/model.bin", Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_verified("v1/model.bin", written.sha256, 1000)
            .await
            .unwrap()
            .len(),
        1000
    );

    let file = dir.path().join("v1/model.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[500] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let err = store
        .get_verified("v1/model.bin", written.sha256, 1000)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::Corrupt);
    let actual = Sha256::of(&bytes);
    match &err {
        StoreError::Corrupt {
            key,
            expected,
            actual: got,
            ..
        } => {
            assert_eq!(
                (key.as_str(), *expected, *got),
                ("v1/model.bin", written.sha256, actual)
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        err.to_string().ends_with(&format!(
            "is corrupt: its sha256 is {actual}, expected {}",
            written.sha256
        )),
        "{err}"
    );
}

#[tokio::test]
async fn bad_keys_are_refused_before_any_io() {
    let (dir, store) = local();
    for key in ["../escape", "/abs", "v1//x", "v1/x#1", ""] {
        let err = store
            .put_new(key, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidKey, "{key:?}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(
        dir.path()
            .parent()
            .unwrap()
            .join("escape")
            .symlink_metadata()
            .is_err()
    );
}

#[test]
fn a_missing_directory_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Local {
        root: dir.path().join("not-mounted"),
    };
    let err = Store::open(&config).unwrap_err();
    assert_eq!(err.reason(), Reason::Unreachable);
    assert_eq!(err.words(), Some("No such file or directory (os error 2)"));
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

/// An S3 store whose endpoint is a loopback port nothing listens on.
fn s3_nowhere() -> Store {
    // A port just released: nothing listens on it while the test runs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = StoreArgs {
        store: Some("s3://models/team".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        path_style: true,
        ..StoreArgs::default()
    };
    let config = args
        .config_with(|| Credentials::new(KEY_ID.into(), SECRET.into()))
        .unwrap();
    Store::open(&config).unwrap()
}

#[tokio::test]
async fn a_closed_port_is_unreachable_in_the_systems_words() {
    let store = s3_nowhere();
    for err in [
        store.get("v1/model.bin", 10).await.unwrap_err(),
        store
            .put_new("v1/model.bin", Bytes::from_static(b"x"))
            .await
            .unwrap_err(),
        store.list("v1", 10).await.unwrap_err(),
    ] {
        assert_eq!(err.reason(), Reason::Unreachable, "{err}");
        assert!(err.words().unwrap().contains("Connection refused"), "{err}");
        assert!(
            err.to_string()
                .contains("in s3://models/team at http://127.0.0.1:"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn credentials_never_print() {
    let store = s3_nowhere();
    let err = store.get("v1/model.bin", 10).await.unwrap_err();
    for text in [
        format!("{store:?}"),
        store.to_string(),
        format!("{err:?}"),
        err.to_string(),
    ] {
        assert!(!text.contains(SECRET) && !text.contains(KEY_ID), "{text}");
    }
}

#[test]
fn an_unreadable_ca_bundle_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.crt");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let open = |ca: std::path::PathBuf| {
        let args = StoreArgs {
            store: Some("s3://models".into()),
            endpoint: Some("https://s3.example.internal".into()),
            ca_file: Some(ca),
            ..StoreArgs::default()
        };
        Store::open(
            &args
                .config_with(|| Credentials::new(KEY_ID.into(), SECRET.into()))
                .unwrap(),
        )
    };
    let missing = dir.path().join("missing.crt");
    let err = open(missing.clone()).unwrap_err();
    assert_eq!(err.reason(), Reason::InvalidConfig);
    assert_eq!(
        err.to_string(),
        format!(
            "--store-ca-file {:?}: cannot be read: No such file or directory (os error 2)",
            missing.display().to_string()
        )
    );
    let err = open(not_pem.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--store-ca-file {:?}: holds no PEM certificate",
            not_pem.display().to_string()
        )
    );
}
