//! PostgreSQL over TLS with rustls, shared by the trainer (sync `postgres`) and the operator's
//! probe (`tokio-postgres`): one connector for both, built from an `sslmode` and an optional CA
//! bundle, and failures explained in words a person can act on.
//!
//! The modes are libpq's, minus the ones that fall back to plain text:
//! - `disable`: no TLS.
//! - `require`: TLS, the server's certificate not checked (encryption against eavesdroppers,
//!   not against a server that impersonates the database).
//! - `verify-full`: TLS, the certificate must chain to the CA bundle given (or, without one, to
//!   the system's roots) and name the host connected to.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    #[default]
    Disable,
    Require,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [Self; 3] = [Self::Disable, Self::Require, Self::VerifyFull];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres should ask of the server: anything but `disable` refuses plain text.
    pub fn postgres(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Require | Self::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not one of disable, require, verify-full"))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("the CA bundle holds no PEM certificate")]
    NoCertificate,
    #[error("the CA bundle has an unreadable certificate: {0}")]
    BadCertificate(String),
    #[error("no CA bundle was given and the system has no trusted root certificates")]
    NoSystemRoots,
}

/// The connector for `mode`, trusting the PEM certificates in `ca` (verify-full; the system's
/// roots when `None`). `disable` still gets a connector: tokio-postgres never uses it then.
pub fn connector(mode: SslMode, ca: Option<&[u8]>) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let config = match mode {
        SslMode::VerifyFull => builder
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth(),
        SslMode::Disable | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(ca: Option<&[u8]>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::BadCertificate(e.to_string()))?;
                store
                    .add(cert)
                    .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
            }
            if store.is_empty() {
                return Err(TlsError::NoCertificate);
            }
        }
        None => {
            // Unreadable files among the system's are skipped, as OpenSSL does.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

/// `require`: the handshake's signatures are checked (so the session is really keyed to the
/// certificate presented) but not who presented it.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A PostgreSQL error as one line a person can act on: the server's own words for a database
/// error, otherwise the whole cause chain (the top level alone is often just "error connecting to
/// server"), with a TLS failure explained first. Shared by the trainer and the operator, so both
/// report the same failure the same way.
pub fn describe_error(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    match explain(err) {
        Some(why) => format!("{why} ({text})"),
        None => text,
    }
}

/// A sentence for a TLS failure somewhere in `err`'s chain (rustls' own words name an enum
/// variant), or `None` when the failure was not TLS.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(describe(tls));
        }
        next = e.source();
    }
    None
}

fn describe(err: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(cert) = err else {
        return format!("TLS handshake failed: {err}");
    };
    let why = match cert {
        CertificateError::UnknownIssuer => {
            "is not signed by a trusted CA (with verify-full, the CA bundle must hold the CA that \
             signed it)"
                .to_string()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "does not name the host connected to (verify-full checks the host name against the \
             certificate's subject alternative names)"
                .to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet".to_string()
        }
        other => format!("was refused: {other:?}"),
    };
    format!("the server's TLS certificate {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_their_libpq_names() {
        for mode in SslMode::ALL {
            assert_eq!(mode.as_str().parse::<SslMode>(), Ok(mode));
        }
        assert_eq!(
            "prefer".parse::<SslMode>(),
            Err("\"prefer\" is not one of disable, require, verify-full".into())
        );
        assert_eq!(
            SslMode::VerifyFull.postgres(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(
            SslMode::Disable.postgres(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn a_ca_bundle_must_hold_a_certificate() {
        assert_eq!(
            connector(SslMode::VerifyFull, Some(b"not a certificate")).err(),
            Some(TlsError::NoCertificate)
        );
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            connector(SslMode::VerifyFull, Some(broken)).err(),
            Some(TlsError::BadCertificate(_))
        ));
        assert!(connector(SslMode::Require, None).is_ok());
        let some_ca = include_bytes!("../testdata/other-ca.pem");
        assert!(connector(SslMode::VerifyFull, Some(some_ca)).is_ok());
    }

    #[test]
    fn certificate_failures_are_explained_through_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let text = explain(&io).unwrap();
        assert!(text.contains("not signed by a trusted CA"), "{text}");
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(explain(&name).unwrap().contains("does not name the host"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(explain(&plain), None);
    }
}
