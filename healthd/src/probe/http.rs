//! HTTP and HTTPS GET on hyper's HTTP/1 client connection: one fresh
//! connection per check unless `keepalive`, explicit source address, SNI,
//! certificate verification on or off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use regex::Regex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::{Failed, ProbeError, connect};
use crate::spec::{Body, Http, ProbeSpec};

/// Bodies are read up to this much; a check page is small.
const BODY_LIMIT: usize = 1 << 20;

pub struct HttpProber {
    verify: Arc<rustls::ClientConfig>,
    no_verify: Arc<rustls::ClientConfig>,
    kept: Mutex<HashMap<ProbeSpec, SendRequest<Empty<Bytes>>>>,
    regexes: Mutex<HashMap<String, Regex>>,
}

impl HttpProber {
    pub fn new() -> Result<HttpProber, ProbeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A broken certificate in the system store is skipped, as
            // every TLS client does.
            let _ = roots.add(cert);
        }
        let tls = |p: Arc<CryptoProvider>| {
            rustls::ClientConfig::builder_with_provider(p)
                .with_safe_default_protocol_versions()
                .map_err(|e| ProbeError::Tls(e.to_string()))
        };
        let verify = tls(provider.clone())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let no_verify = tls(provider.clone())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth();
        Ok(HttpProber {
            verify: Arc::new(verify),
            no_verify: Arc::new(no_verify),
            kept: Mutex::new(HashMap::new()),
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// The TLS client configuration, verifying certificates or not (the
    /// smtp check's STARTTLS shares it).
    pub fn tls(&self, verify: bool) -> Arc<rustls::ClientConfig> {
        if verify {
            self.verify.clone()
        } else {
            self.no_verify.clone()
        }
    }

    /// Drops a kept-alive connection (after a timeout it may be wedged).
    pub fn forget(&self, spec: &ProbeSpec) {
        self.kept.lock().expect("not poisoned").remove(spec);
    }

    async fn open(&self, h: &Http) -> Result<SendRequest<Empty<Bytes>>, Failed> {
        let tcp = connect(h.target, h.source).await.map_err(Failed::io)?;
        macro_rules! handshake {
            ($io:expr) => {{
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($io))
                    .await
                    .map_err(|e| format!("HTTP: {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(sender)
            }};
        }
        match &h.tls {
            None => handshake!(tcp),
            Some(tls) => {
                let config = if tls.verify {
                    &self.verify
                } else {
                    &self.no_verify
                };
                let name = match &tls.sni {
                    Some(n) => ServerName::try_from(n.clone())
                        .map_err(|_| format!("TLS: \"{n}\" is not a server name"))?,
                    None => ServerName::IpAddress(h.target.ip().into()),
                };
                let stream = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        format!(
                            "TLS: {}",
                            e.to_string()
                                .trim_start_matches("invalid peer certificate: ")
                        )
                    })?;
                handshake!(stream)
            }
        }
    }

    /// Ok(reason) when the server passes, Err(why) when not. The caller
    /// bounds it with the timeout.
    pub async fn check(&self, spec: &ProbeSpec, h: &Http) -> Result<String, Failed> {
        let kept = if h.keepalive {
            self.kept.lock().expect("not poisoned").remove(spec)
        } else {
            None
        };
        let mut sender = match kept {
            Some(s) if s.is_ready() => s,
            _ => self.open(h).await?,
        };
        let host = h.host.clone().unwrap_or_else(|| match h.target {
            std::net::SocketAddr::V4(a) => a.to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        });
        let req = Request::get(&h.path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "tandem-healthd")
            .header(
                hyper::header::CONNECTION,
                if h.keepalive { "keep-alive" } else { "close" },
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("HTTP: {e}"))?;
        let resp = sender.send_request(req).await.map_err(|e| {
            if e.is_incomplete_message() {
                "connection closed before a response".to_string()
            } else {
                format!("HTTP: {e}")
            }
        })?;
        let code = resp.status().as_u16();
        if !h.statuses.iter().any(|s| s.matches(code)) {
            return Err(format!("HTTP {code}").into());
        }
        if h.body != Body::Any {
            let body = read_limited(resp.into_body()).await?;
            let ok = match &h.body {
                Body::Any => true,
                Body::Contains(s) => {
                    body.windows(s.len().max(1)).any(|w| w == s.as_bytes()) || s.is_empty()
                }
                Body::Regex(r) => {
                    let mut cache = self.regexes.lock().expect("not poisoned");
                    let re = match cache.get(r) {
                        Some(re) => re.clone(),
                        None => {
                            let re = Regex::new(r).map_err(|e| format!("body_regex: {e}"))?;
                            cache.insert(r.clone(), re.clone());
                            re
                        }
                    };
                    re.is_match(&String::from_utf8_lossy(&body))
                }
                Body::Md5(want) => {
                    let got: String = Md5::digest(&body)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    if got != *want {
                        return Err(format!("body digest {got}, expected {want}").into());
                    }
                    true
                }
            };
            if !ok {
                return Err(format!("HTTP {code}, body mismatch").into());
            }
        }
        if h.keepalive {
            self.kept
                .lock()
                .expect("not poisoned")
                .insert(spec.clone(), sender);
        }
        Ok(format!("HTTP {code}"))
    }
}

async fn read_limited(mut body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("HTTP body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            out.extend_from_slice(data);
            if out.len() > BODY_LIMIT {
                out.truncate(BODY_LIMIT);
                break;
            }
        }
    }
    Ok(out)
}

/// `tls_verify = false`: any certificate is accepted (the handshake's
/// signatures are still checked, so the TLS session itself is sound).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
