//! The S3 server stopped under the store (tests/cluster/s3.sh stop), then started again: every
//! operation is `Unreachable` in the system's words while it is down, and what was stored is
//! there, unchanged, when it is back. Its own test binary, so no other test of this crate sees the outage.

mod common;

use std::process::Command;

use bytes::Bytes;
use recommender_store::Reason;

fn s3_sh(verb: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/cluster/s3.sh");
    let status = Command::new("bash").arg(script).arg(verb).status().unwrap();
    assert!(status.success(), "s3.sh {verb} failed: {status}");
}

/// Starts the server again even when an assertion failed while it was down.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        s3_sh("start");
    }
}

#[tokio::test]
async fn a_stopped_server_is_unreachable_and_keeps_its_data() {
    let Some(s) = common::server("a_stopped_server_is_unreachable_and_keeps_its_data") else {
        return;
    };
    if std::env::var_os("RECOMMENDER_S3_STATE").is_none() {
        panic!(
            "RECOMMENDER_S3_ENDPOINT is set but RECOMMENDER_S3_STATE is not: this test stops the server with tests/cluster/s3.sh"
        );
    }
    let store = s.store("outage");
    let written = common::contract::weights(&store, "v1/model.bin").await;

    let restart = Restart;
    s3_sh("stop");
    for (_, err) in common::contract::every_operation_fails(&store).await {
        assert_eq!(err.reason(), Reason::Unreachable, "{err}");
        assert!(err.words().unwrap().contains("Connection refused"), "{err}");
    }
    drop(restart);

    // Back with its data; neither the refused put nor the refused delete happened.
    let read = store
        .get_verified("v1/model.bin", written.sha256, 100)
        .await
        .unwrap();
    assert_eq!(read, Bytes::from_static(b"weights"));
}
