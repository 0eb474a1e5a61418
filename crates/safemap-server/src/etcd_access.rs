//! How a server reaches a secured etcd (cluster.md, "Running it"): TLS with a
//! CA (and a client certificate when etcd runs with `--client-cert-auth`),
//! and etcd's user/password authentication.
//!
//! | setting | flag | `[store]` field | environment |
//! |---|---|---|---|
//! | CA that signed etcd's server certificates | `--etcd-ca` | `ca` | `SAFEMAP_ETCD_CA` |
//! | client certificate chain (PEM) | `--etcd-cert` | `cert` | `SAFEMAP_ETCD_CERT` |
//! | its private key (PEM) | `--etcd-key` | `key` | `SAFEMAP_ETCD_KEY` |
//! | etcd user | `--etcd-user` | `user` | `SAFEMAP_ETCD_USER` |
//! | its password | — | — (refused in the file) | `SAFEMAP_ETCD_PASSWORD` |
//!
//! The password is read only from the environment: not from a flag (it would
//! show in `ps`) nor from the TOML file (config files get copied, committed
//! and printed). Everything is checked before the server touches etcd or its
//! data directory ([`EtcdAccess::check`]): a missing or unreadable file, a
//! file without a PEM certificate or key, a certificate without its key, a
//! user without a password, TLS files with `http://` endpoints or `https://`
//! endpoints without a CA each stop the start with a message naming it.
//!
//! This build trusts only the CA given (no system roots): an etcd behind a
//! public CA needs that CA's certificate in `--etcd-ca` too.

use std::path::{Path, PathBuf};

/// The environment variable the etcd password is read from.
pub const PASSWORD_ENV: &str = "SAFEMAP_ETCD_PASSWORD";

/// A password: never printed (`Debug` shows `"***"`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    /// The password itself (to hand to the etcd client only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// TLS files and etcd user of the etcd store, as configured (paths, not yet read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdAccess {
    /// PEM file of the CA(s) that signed etcd's server certificates.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (etcd `--client-cert-auth`); needs `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// etcd user (`etcdctl user add`); needs `password`.
    pub user: Option<String>,
    /// The user's password, from [`PASSWORD_ENV`] only.
    pub password: Option<Secret>,
}

/// The TLS material read and checked: PEM bytes ready for the etcd client.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate(s), PEM.
    pub ca: Vec<u8>,
    /// The client certificate chain and its key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl EtcdAccess {
    /// Whether any TLS file is configured.
    pub fn tls(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Checks the settings against the endpoints and reads the TLS files:
    /// `None` when TLS is off. Every error names the flag or file at fault.
    pub fn check(&self, endpoints: &[String]) -> Result<Option<TlsFiles>, String> {
        match (&self.user, &self.password) {
            (Some(user), None) => {
                return Err(format!(
                    "--etcd-user {user:?} needs its password in the environment variable {PASSWORD_ENV}"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{PASSWORD_ENV} is set but no etcd user is (--etcd-user or [store] user)"
                ));
            }
            (Some(user), Some(_)) if user.is_empty() => {
                return Err("--etcd-user must not be empty".into());
            }
            _ => {}
        }
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https > 0 && https < endpoints.len() {
            return Err("the etcd endpoints mix http:// and https://; use one scheme".into());
        }
        if !self.tls() {
            if https > 0 {
                return Err("https:// etcd endpoints need --etcd-ca (the CA that signed etcd's certificates; this build reads no system roots)".into());
            }
            return Ok(None);
        }
        if https == 0 {
            return Err(
                "--etcd-ca, --etcd-cert and --etcd-key need https:// etcd endpoints".into(),
            );
        }
        let Some(ca) = &self.ca else {
            return Err("TLS to etcd needs --etcd-ca (the CA that signed etcd's certificates; this build reads no system roots)".into());
        };
        let ca = read_certs(ca, "--etcd-ca")?;
        let identity = match (&self.cert, &self.key) {
            (None, None) => None,
            (Some(_), None) => return Err("--etcd-cert needs --etcd-key (its private key)".into()),
            (None, Some(_)) => return Err("--etcd-key needs --etcd-cert (its certificate)".into()),
            (Some(cert), Some(key)) => Some((read_certs(cert, "--etcd-cert")?, read_key(key)?)),
        };
        Ok(Some(TlsFiles { ca, identity }))
    }
}

/// Reads a PEM file that must hold at least one certificate.
fn read_certs(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        cert.map_err(|e| format!("{flag} {}: not a PEM certificate: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "{flag} {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Reads a PEM file that must hold a private key.
fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("--etcd-key {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("--etcd-key {}: no PEM private key: {e}", path.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> EtcdAccess {
        EtcdAccess::default()
    }

    #[test]
    fn user_and_password_go_together() {
        let eps = ["http://127.0.0.1:2379".to_string()];
        let mut a = access();
        a.user = Some("root".into());
        let e = a.check(&eps).unwrap_err();
        assert!(e.contains(PASSWORD_ENV), "{e}");
        a.password = Some(Secret::new("pw".into()));
        assert!(a.check(&eps).unwrap().is_none());
        a.user = None;
        assert!(a.check(&eps).unwrap_err().contains("no etcd user"));
        assert_eq!(format!("{:?}", Secret::new("pw".into())), "\"***\"");
    }

    #[test]
    fn tls_files_are_checked_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let https = ["https://127.0.0.1:2379".to_string()];
        let http = ["http://127.0.0.1:2379".to_string()];
        let e = access().check(&https).unwrap_err();
        assert!(e.contains("need --etcd-ca"), "{e}");
        let mut a = access();
        a.ca = Some(dir.path().join("absent.pem"));
        let e = a.check(&https).unwrap_err();
        assert!(e.contains("--etcd-ca") && e.contains("absent.pem"), "{e}");
        let e = a.check(&http).unwrap_err();
        assert!(e.contains("need https://"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        a.ca = Some(junk.clone());
        let e = a.check(&https).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let mixed = [https[0].clone(), http[0].clone()];
        assert!(a.check(&mixed).unwrap_err().contains("mix"));
        let mut a = access();
        a.cert = Some(junk);
        a.ca = a.cert.clone();
        let e = a.check(&https).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
