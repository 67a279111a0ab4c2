//! The cluster's identity: a certificate authority of its own, and one
//! certificate per director naming it (subject alternative name = node
//! name). The sync channel is mutual TLS against that authority only: a
//! peer proves it is `lb2` of *this* cluster, and nothing else gets in.
//!
//! `tandem cluster init` makes the authority and the first director's
//! certificate; `tandem cluster invite lb2` makes a bundle (the
//! authority's certificate, lb2's certificate and key) that `tandem
//! cluster join` installs on lb2. The authority's key stays where it was
//! made.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |cause| IdentityError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Writes a file readable by root only, replacing none: an identity is
/// never overwritten by mistake.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), IdentityError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn ca_params() -> Result<CertificateParams, IdentityError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name
        .push(DnType::CommonName, "tandem cluster authority");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p);
    Ok(p)
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    // A director is not replaced often; renewing is `invite` + `join`.
    p.not_after = now + time::Duration::days(365 * 20);
}

/// A node certificate and key, in PEM, signed by the authority.
fn issue(ca_cert: &str, ca_key: &str, node: &str) -> Result<(String, String), IdentityError> {
    ServerName::try_from(node.to_string()).map_err(|_| {
        IdentityError::Refused(format!("\"{node}\" cannot be a certificate's name"))
    })?;
    let key = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, key)?;
    let mut p = CertificateParams::new(vec![node.to_string()])?;
    p.distinguished_name.push(DnType::CommonName, node);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p);
    let node_key = KeyPair::generate()?;
    let cert = p.signed_by(&node_key, &issuer)?;
    Ok((cert.pem(), node_key.serialize_pem()))
}

/// `tandem cluster init`: a new authority and this director's identity
/// in `dir`.
pub fn init(dir: &Path, node: &str) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    for f in [CA_CERT, CA_KEY, NODE_CERT, NODE_KEY] {
        if dir.join(f).exists() {
            return Err(IdentityError::Refused(format!(
                "{} exists: this director already has a cluster identity (remove {} to start a new cluster)",
                dir.join(f).display(),
                dir.display()
            )));
        }
    }
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    let ca_pem = ca.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let (cert, key) = issue(&ca_pem, &ca_key_pem, node)?;
    write_new(&dir.join(CA_KEY), &ca_key_pem, 0o600)?;
    write_new(&dir.join(CA_CERT), &ca_pem, 0o644)?;
    write_new(&dir.join(NODE_KEY), &key, 0o600)?;
    write_new(&dir.join(NODE_CERT), &cert, 0o644)?;
    Ok(())
}

/// `tandem cluster invite NODE`: a bundle for another director, made
/// where the authority's key is.
pub fn invite(dir: &Path, node: &str) -> Result<String, IdentityError> {
    let ca_cert = fs::read_to_string(dir.join(CA_CERT)).map_err(io(&dir.join(CA_CERT)))?;
    let ca_key_path = dir.join(CA_KEY);
    let ca_key = fs::read_to_string(&ca_key_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            IdentityError::Refused(format!(
                "{} is not here: invite from the director where `tandem cluster init` ran",
                ca_key_path.display()
            ))
        } else {
            io(&ca_key_path)(e)
        }
    })?;
    let (cert, key) = issue(&ca_cert, &ca_key, node)?;
    Ok(format!(
        "# tandem cluster identity for {node}: install with `tandem cluster join FILE` on {node}, then delete this file.\n# It holds {node}'s private key.\n{ca_cert}{cert}{key}"
    ))
}

/// `tandem cluster join BUNDLE`: installs what `invite` made.
pub fn join(dir: &Path, bundle: &str, bundle_path: &Path) -> Result<String, IdentityError> {
    let bad = |what: &str| IdentityError::Bad {
        path: bundle_path.to_path_buf(),
        what: what.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&format!("not a tandem identity bundle: {e}")))?;
    if certs.len() != 2 {
        return Err(bad(
            "not a tandem identity bundle: expected the authority's and the node's certificate",
        ));
    }
    PrivateKeyDer::from_pem_slice(bundle.as_bytes())
        .map_err(|e| bad(&format!("no private key in the bundle: {e}")))?;
    let node = names(&certs[1])
        .into_iter()
        .next()
        .ok_or_else(|| bad("the node certificate names no node"))?;
    // The PEM blocks as they were written: authority, node, key.
    let mut pem: Vec<String> = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN ") {
        let tail = &rest[start..];
        let Some(end) = tail.find("-----END ") else {
            break;
        };
        let after = &tail[end..];
        let close = after.find('\n').map_or(after.len(), |i| i + 1);
        pem.push(tail[..end + close].to_string());
        rest = &after[close..];
    }
    if pem.len() != 3 {
        return Err(bad(
            "not a tandem identity bundle: expected three PEM blocks",
        ));
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    for f in [CA_CERT, NODE_CERT, NODE_KEY] {
        if dir.join(f).exists() {
            return Err(IdentityError::Refused(format!(
                "{} exists: this director already has a cluster identity",
                dir.join(f).display()
            )));
        }
    }
    write_new(&dir.join(CA_CERT), &pem[0], 0o644)?;
    write_new(&dir.join(NODE_CERT), &pem[1], 0o644)?;
    write_new(&dir.join(NODE_KEY), &pem[2], 0o600)?;
    Ok(node)
}

/// The DNS names a certificate is for.
pub fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(c) => c.valid_dns_names().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether `cert` (already verified against the authority) is `node`'s.
pub fn is_for(cert: &CertificateDer<'_>, node: &str) -> bool {
    let Ok(name) = ServerName::try_from(node.to_string()) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}

/// This director's side of the channel: TLS configurations for accepting
/// and for dialling, both against the cluster's authority only.
pub struct Identity {
    pub node: String,
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl Identity {
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let read = |f: &str| -> Result<Vec<u8>, IdentityError> {
            let p = dir.join(f);
            fs::read(&p).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    IdentityError::Refused(format!(
                        "{} is missing: this director has no cluster identity yet (`tandem cluster init` on the first director, `tandem cluster invite NODE` there and `tandem cluster join BUNDLE` on the others)",
                        p.display()
                    ))
                } else {
                    io(&p)(e)
                }
            })
        };
        let bad = |f: &str, what: String| IdentityError::Bad {
            path: dir.join(f),
            what,
        };
        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(CA_CERT)?)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(CA_CERT, e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(NODE_CERT)?)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(NODE_CERT, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(NODE_KEY)?)
            .map_err(|e| bad(NODE_KEY, e.to_string()))?;
        let node = chain
            .first()
            .and_then(|c| names(c).into_iter().next())
            .ok_or_else(|| bad(NODE_CERT, "names no node".into()))?;
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| IdentityError::Refused(format!("client verifier: {e}")))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(Identity {
            node,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invited_director_gets_a_certificate_for_its_name_from_the_clusters_authority() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        init(d1.path(), "lb1").unwrap();
        let bundle = invite(d1.path(), "lb2").unwrap();
        let node = join(d2.path(), &bundle, Path::new("lb2.bundle")).unwrap();
        assert_eq!(node, "lb2");
        let a = Identity::load(d1.path()).unwrap();
        let b = Identity::load(d2.path()).unwrap();
        assert_eq!((a.node.as_str(), b.node.as_str()), ("lb1", "lb2"));
        assert!(
            !d2.path().join(CA_KEY).exists(),
            "the authority's key stays home"
        );
        let cert = fs::read(d2.path().join(NODE_CERT)).unwrap();
        let cert = CertificateDer::from_pem_slice(&cert).unwrap();
        assert!(is_for(&cert, "lb2"));
        assert!(!is_for(&cert, "lb1"));
    }

    #[test]
    fn init_never_overwrites_an_identity() {
        let d = tempfile::tempdir().unwrap();
        init(d.path(), "lb1").unwrap();
        assert!(matches!(
            init(d.path(), "lb1"),
            Err(IdentityError::Refused(_))
        ));
    }

    #[test]
    fn a_bundle_that_is_not_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = join(d.path(), "hello", Path::new("x")).unwrap_err();
        assert!(
            e.to_string().contains("not a tandem identity bundle"),
            "{e}"
        );
    }
}
