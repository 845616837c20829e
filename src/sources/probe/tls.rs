//! TLS client setup for the probes (rustls with the ring provider).
//!
//! Every connection gets its own verifier that first records the server's
//! leaf certificate (for the certificate table, even when verification then
//! fails) and then either verifies the chain against the system's trust
//! store or, with `tls_verify = false`, accepts it as served.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex, OnceLock};

/// What one TLS connection needs to know.
#[derive(Debug, Clone)]
pub struct TlsParams {
    /// Name sent as SNI and checked against the certificate.
    pub server_name: String,
    /// Verify the chain and the name.
    pub verify: bool,
}

/// The leaf certificate a server presented (DER), shared with the verifier.
pub type ServedCert = Arc<Mutex<Option<Vec<u8>>>>;

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The system's trusted roots, loaded once (reading /etc/ssl/certs is slow).
fn roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let why = loaded
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "no trusted root certificates found (apt-get install -y ca-certificates){why}"
                ));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

#[derive(Debug)]
struct RecordingVerifier {
    /// `None`: accept any chain (tls_verify = false).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    served: ServedCert,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut served) = self.served.lock() {
            *served = Some(end_entity.as_ref().to_vec());
        }
        match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    // The handshake signature is always checked: without it a man in the
    // middle could complete the handshake with someone else's certificate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client connection for `params`; the server's leaf certificate lands in `served`.
pub fn client(params: &TlsParams, served: &ServedCert) -> Result<rustls::ClientConnection, String> {
    let provider = provider();
    let webpki = if params.verify {
        let v = WebPkiServerVerifier::builder_with_provider(roots()?, Arc::clone(&provider))
            .build()
            .map_err(|e| format!("TLS verifier: {e}"))?;
        Some(v)
    } else {
        None
    };
    let verifier = RecordingVerifier {
        webpki,
        provider: Arc::clone(&provider),
        served: Arc::clone(served),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let name = ServerName::try_from(params.server_name.clone())
        .map_err(|_| format!("{:?} is not a valid TLS server name", params.server_name))?;
    rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))
}

/// The host part of `host:port` (IPv6 brackets removed), for SNI and checks.
pub fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("127.0.0.1:25"), "127.0.0.1");
        assert_eq!(host_of("[::1]:993"), "::1");
        assert_eq!(host_of("mail.example.org:587"), "mail.example.org");
    }

    #[test]
    fn clients_build_with_and_without_verification() {
        for verify in [false, true] {
            let params = TlsParams {
                server_name: "mail.example.org".into(),
                verify,
            };
            // Verification needs the system trust store (ca-certificates).
            if let Err(e) = client(&params, &ServedCert::default()) {
                panic!("verify={verify}: {e}");
            }
        }
    }
}
