//! A console's TLS listener: remote subscribers over TLS (rustls), judged by their client
//! certificate.
//!
//! The settings ([`TlsSettings`]) say where to listen, where the credentials are (QEMU's
//! `tls-creds-x509` layout: `ca-cert.pem`, `server-cert.pem`, `server-key.pem`, and
//! `ca-crl.pem` if there is one), and who gets which role: a client certificate signed by the
//! CA is judged by its subject against `tls_read_write` and `tls_read_only` ([`Pattern`]), and
//! a client without one by `tls_anonymous`. A certificate the CA did not sign fails the
//! handshake.
//!
//! The parts:
//! - here: the settings, the role mapping, the subject of a certificate, and the credentials
//!   read from the directory ([`Credentials`]);
//! - `accept`: the console's side: the listener, handshakes in progress (bounded in time and
//!   number), and what happens to a peer once its handshake is done (it joins or is refused);
//! - `stream`: one TLS connection, sans-IO rustls over a readiness-based `TcpStream`, with the
//!   calls a subscriber's `Socket` makes.
//!
//! The console (`console/mod.rs`) owns the listener; `serve::checks` reads the credentials on
//! the blocking pool when the console is made.

pub(crate) mod accept;
pub(crate) mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::console::Role;

/// The CA that signs the client certificates, in QEMU's layout.
pub(crate) const CA_CERT: &str = "ca-cert.pem";
/// The server's certificate (chain), in QEMU's layout.
pub(crate) const SERVER_CERT: &str = "server-cert.pem";
/// The server's private key, in QEMU's layout.
pub(crate) const SERVER_KEY: &str = "server-key.pem";
/// The CA's revocation list, optional, in QEMU's layout.
pub(crate) const CA_CRL: &str = "ca-crl.pem";
/// The largest credentials file read.
const MAX_FILE: u64 = 1 << 20;
/// The longest subject pattern taken.
const MAX_PATTERN: usize = 1024;

/// What happens to a TLS client that presents no certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Anonymous {
    /// Refused, told why (the default: the certificate is what tells who connects).
    #[default]
    Refuse,
    /// Let in read-only.
    ReadOnly,
}

impl Anonymous {
    /// `refuse` or `read-only`, as the option and the key spell it.
    pub(crate) fn parse(text: &str) -> Result<Anonymous, String> {
        match text {
            "refuse" => Ok(Anonymous::Refuse),
            "read-only" => Ok(Anonymous::ReadOnly),
            other => Err(format!(
                "tls_anonymous: {other:?} is not one of \"refuse\", \"read-only\""
            )),
        }
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            Anonymous::Refuse => "refuse",
            Anonymous::ReadOnly => "read-only",
        }
    }
}

/// One entry of `tls_read_write` or `tls_read_only`: a subject as RFC 4514 writes it
/// (`CN=alice,O=Example`, most specific first, as `ps` shows a TLS subscriber), or `CN=NAME`
/// alone, which matches any subject whose only CN is NAME. Attribute types compare without
/// case (`cn=alice` is `CN=alice`), spaces around `,` and `=` are ignored, and values compare
/// exactly, escapes as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct Pattern {
    written: String,
    rdns: Vec<Rdn>,
}

/// One relative distinguished name: its attribute type (upper case) and its value (escaped as
/// RFC 4514 does; a multi-valued RDN's further `+TYPE=VALUE` stay in the value).
type Rdn = (String, String);

impl TryFrom<String> for Pattern {
    type Error = String;

    fn try_from(written: String) -> Result<Pattern, String> {
        if written.len() > MAX_PATTERN || written.chars().any(char::is_control) {
            return Err(format!(
                "invalid subject {written:?}: at most {MAX_PATTERN} bytes, no control characters"
            ));
        }
        let rdns = rdns_of(&written).filter(|r| !r.is_empty()).ok_or_else(|| {
            format!(
                "invalid subject {written:?}: expected TYPE=VALUE, separated by ',' \
                     (e.g. CN=alice,O=Example)"
            )
        })?;
        Ok(Pattern { written, rdns })
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.written
    }
}

impl Pattern {
    /// Whether `subject` is the one this entry names.
    fn matches(&self, subject: &Subject) -> bool {
        match self.rdns.as_slice() {
            [(t, v)] if t == "CN" => subject.cn() == Some(v.as_str()),
            rdns => rdns == subject.rdns.as_slice(),
        }
    }
}

/// `TYPE=VALUE` parts of an RFC 4514 string, split at each unescaped `,`, or None if one is
/// not `TYPE=VALUE`.
fn rdns_of(text: &str) -> Option<Vec<Rdn>> {
    let mut out = Vec::new();
    let mut part = String::new();
    let mut chars = text.chars();
    let mut push = |part: &str| -> Option<()> {
        let (t, v) = part.split_once('=')?;
        let (t, v) = (t.trim(), v.trim());
        if t.is_empty()
            || t.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return None;
        }
        out.push((t.to_ascii_uppercase(), v.to_owned()));
        Some(())
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                part.push(c);
                part.push(chars.next()?);
            }
            ',' => {
                push(&part)?;
                part.clear();
            }
            c => part.push(c),
        }
    }
    push(&part)?;
    Some(out)
}

/// A client certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    /// RFC 4514: `CN=alice,O=Example`.
    pub(crate) text: String,
    rdns: Vec<Rdn>,
}

impl Subject {
    /// The subject of a DER certificate (one the verifier accepted).
    pub(crate) fn of(cert: &CertificateDer<'_>) -> Result<Subject, String> {
        use x509_cert::der::Decode;
        let c = x509_cert::Certificate::from_der(cert.as_ref())
            .map_err(|e| format!("cannot read the client certificate: {e}"))?;
        Subject::from_rfc4514(c.tbs_certificate.subject.to_string())
    }

    fn from_rfc4514(text: String) -> Result<Subject, String> {
        let rdns = rdns_of(&text)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("the client certificate has no usable subject ({text:?})"))?;
        Ok(Subject { text, rdns })
    }

    /// The value of its CN, if it has exactly one.
    fn cn(&self) -> Option<&str> {
        let mut cns = self.rdns.iter().filter(|(t, _)| t == "CN");
        match (cns.next(), cns.next()) {
            (Some((_, v)), None) => Some(v),
            _ => None,
        }
    }
}

/// A console's TLS settings as asked for (a request's options, a `[[console]]` table): the
/// address and the directory as written, the lists not parsed yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsRequest {
    pub(crate) addr: String,
    pub(crate) dir: String,
    pub(crate) read_write: Vec<String>,
    pub(crate) read_only: Vec<String>,
    pub(crate) anonymous: Anonymous,
}

/// The TLS options of an `AddConsoleWith`, gathered ([`TlsOptions::take`]) and checked
/// together ([`TlsOptions::request`]).
#[derive(Debug, Default)]
pub(crate) struct TlsOptions {
    addr: Option<String>,
    dir: Option<String>,
    read_write: Option<Vec<String>>,
    read_only: Option<Vec<String>>,
    anonymous: Option<String>,
}

impl TlsOptions {
    /// Takes one TLS option; true if it was given before. Any other option is not taken
    /// (false): the caller gives the TLS options only.
    pub(crate) fn take(&mut self, o: logd_protocol::ConsoleOption) -> bool {
        use logd_protocol::ConsoleOption as O;
        match o {
            O::Tls(a) => self.addr.replace(a).is_some(),
            O::TlsDir(d) => self.dir.replace(d).is_some(),
            O::TlsReadWrite(v) => self.read_write.replace(v).is_some(),
            O::TlsReadOnly(v) => self.read_only.replace(v).is_some(),
            O::TlsAnonymous(a) => self.anonymous.replace(a).is_some(),
            _ => false,
        }
    }

    /// The TLS listener asked for, if any: `--tls` and `--tls-dir` go together, and the
    /// others need them.
    pub(crate) fn request(self) -> Result<Option<TlsRequest>, String> {
        let anonymous = self
            .anonymous
            .as_deref()
            .map(Anonymous::parse)
            .transpose()?;
        match (self.addr, self.dir) {
            (Some(addr), Some(dir)) => Ok(Some(TlsRequest {
                addr,
                dir,
                read_write: self.read_write.unwrap_or_default(),
                read_only: self.read_only.unwrap_or_default(),
                anonymous: anonymous.unwrap_or_default(),
            })),
            (Some(_), None) => Err(format!(
                "--tls needs --tls-dir: the directory of {CA_CERT}, {SERVER_CERT} and {SERVER_KEY}"
            )),
            (None, Some(_)) => Err("--tls-dir needs --tls, the address to listen on".into()),
            (None, None) if self.read_write.is_some() || self.read_only.is_some() || anonymous.is_some() => Err(
                "--tls-read-write, --tls-read-only and --tls-anonymous need --tls and --tls-dir"
                    .into(),
            ),
            (None, None) => Ok(None),
        }
    }
}

/// A console's TLS settings, paths resolved: what a re-exec carries and what the declared
/// consoles compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TlsSettings {
    /// `ADDR:PORT`, as checked (a bare port is 127.0.0.1's).
    pub(crate) addr: String,
    /// The credentials' directory.
    pub(crate) dir: PathBuf,
    pub(crate) read_write: Vec<Pattern>,
    pub(crate) read_only: Vec<Pattern>,
    pub(crate) anonymous: Anonymous,
}

/// Why a TLS peer is refused after its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No certificate, and `tls_anonymous` is `refuse`.
    NoCertificate,
    /// A certificate whose subject is in neither list.
    NotListed,
}

impl TlsSettings {
    /// The settings from their written form (a request's options, a `[[console]]` table);
    /// `addr` and `dir` as the caller resolved them.
    pub(crate) fn from_lists(
        addr: String,
        dir: PathBuf,
        read_write: &[String],
        read_only: &[String],
        anonymous: Anonymous,
    ) -> Result<TlsSettings, String> {
        let parse = |list: &str, v: &[String]| {
            v.iter()
                .map(|t| Pattern::try_from(t.clone()).map_err(|e| format!("{list}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TlsSettings {
            addr,
            dir,
            read_write: parse("tls_read_write", read_write)?,
            read_only: parse("tls_read_only", read_only)?,
            anonymous,
        })
    }

    /// The role of a peer whose handshake is done: `subject` is its certificate's (the CA
    /// signed it), None without one. A subject in `read_write` is read-write, else in
    /// `read_only` read-only; with both lists empty any certificate is read-only; with lists,
    /// a subject in neither is refused.
    pub(crate) fn role_of(&self, subject: Option<&Subject>) -> Result<Role, Refusal> {
        let Some(subject) = subject else {
            return match self.anonymous {
                Anonymous::Refuse => Err(Refusal::NoCertificate),
                Anonymous::ReadOnly => Ok(Role::ReadOnly),
            };
        };
        let named = |list: &[Pattern]| list.iter().any(|p| p.matches(subject));
        if named(&self.read_write) {
            Ok(Role::ReadWrite)
        } else if named(&self.read_only)
            || (self.read_write.is_empty() && self.read_only.is_empty())
        {
            Ok(Role::ReadOnly)
        } else {
            Err(Refusal::NotListed)
        }
    }
}

/// A console's TLS: its settings, and its credentials once read (by `serve::checks`, on the
/// blocking pool; a re-exec's new image reads them again).
#[derive(Debug, Clone)]
pub(crate) struct TlsConfig {
    pub(crate) settings: TlsSettings,
    pub(crate) creds: Option<Credentials>,
}

/// Why the credentials could not be used. Each names the file or the directory.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE} bytes: not a PEM file of credentials")]
    TooLarge { path: PathBuf },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path}: the CA certificate is not usable: {source}")]
    Ca {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "cannot verify client certificates with the CA and revocation list in {dir}: {source}"
    )]
    Verifier {
        dir: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{SERVER_CERT} and {SERVER_KEY} in {dir} are not a usable server identity: {source}")]
    Identity { dir: PathBuf, source: rustls::Error },
    #[error("the TLS settings for {dir}: {source}")]
    Settings { dir: PathBuf, source: rustls::Error },
}

/// The PEM files as read: kept so that a re-exec can go on with them if the directory cannot be
/// read then.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Pems {
    pub(crate) ca: Vec<u8>,
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) crl: Option<Vec<u8>>,
}

impl std::fmt::Debug for Pems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Pems { .. }")
    }
}

/// The credentials, read and made into the server's rustls settings.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) pems: Pems,
    pub(crate) server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// The files of a credentials directory: the CA, the server's certificate and key, the CRL.
pub(crate) fn files(dir: &Path) -> [PathBuf; 4] {
    [CA_CERT, SERVER_CERT, SERVER_KEY, CA_CRL].map(|f| dir.join(f))
}

impl Credentials {
    /// Reads the directory (it may block: the caller runs it off the console's thread, but for
    /// a re-exec's take-over) and makes the server's settings.
    pub(crate) fn load(dir: &Path) -> Result<Credentials, TlsError> {
        let [ca, cert, key, crl] = files(dir);
        let read = |path: &Path| -> Result<Vec<u8>, TlsError> {
            use std::io::Read;
            let f = std::fs::File::open(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })?;
            let mut out = Vec::new();
            f.take(MAX_FILE + 1)
                .read_to_end(&mut out)
                .map_err(|source| TlsError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            if out.len() as u64 > MAX_FILE {
                return Err(TlsError::TooLarge {
                    path: path.to_owned(),
                });
            }
            Ok(out)
        };
        let crl = match read(&crl) {
            Ok(b) => Some(b),
            Err(TlsError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e),
        };
        let pems = Pems {
            ca: read(&ca)?,
            cert: read(&cert)?,
            key: read(&key)?,
            crl,
        };
        Credentials::from_pems(dir, pems)
    }

    /// The server's settings from PEM files as read from `dir` (which names them in errors).
    pub(crate) fn from_pems(dir: &Path, pems: Pems) -> Result<Credentials, TlsError> {
        let [ca_path, cert_path, key_path, crl_path] = files(dir);
        let pem = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let certs = |path: &Path, bytes: &[u8]| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let v = CertificateDer::pem_slice_iter(bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem(path, e))?;
            if v.is_empty() {
                return Err(TlsError::Pem {
                    path: path.to_owned(),
                    reason: "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
                });
            }
            Ok(v)
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&ca_path, &pems.ca)? {
            roots.add(c).map_err(|source| TlsError::Ca {
                path: ca_path.clone(),
                source,
            })?;
        }
        let chain = certs(&cert_path, &pems.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
                path: key_path.clone(),
                reason: "no private key in it (expected -----BEGIN PRIVATE KEY-----, or an RSA \
                         or EC key)"
                    .into(),
            },
            e => pem(&key_path, e),
        })?;
        let crls = match &pems.crl {
            Some(b) => CertificateRevocationListDer::pem_slice_iter(b)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem(&crl_path, e))?,
            None => Vec::new(),
        };
        // ring, not aws-lc-rs (which needs cmake to build): rustls deprecates ring's provider
        // for its lack of post-quantum key exchange, which these consoles do without.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A client without a certificate passes the handshake: `TlsSettings::role_of` decides,
        // so that it is told why in plain words rather than by an alert.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .with_crls(crls)
        .allow_unauthenticated()
        .build()
        .map_err(|source| TlsError::Verifier {
            dir: dir.to_owned(),
            source,
        })?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Settings {
                dir: dir.to_owned(),
                source,
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Identity {
                dir: dir.to_owned(),
                source,
            })?;
        // No resumption: each connection shows its certificate, and nothing outlives the
        // process (a re-exec's new image could not resume the old one's sessions anyway).
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        Ok(Credentials {
            pems,
            server: Arc::new(server),
        })
    }
}

#[cfg(test)]
mod sessions;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rw: &[&str], ro: &[&str], anonymous: Anonymous) -> TlsSettings {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        TlsSettings::from_lists("127.0.0.1:1".into(), "d".into(), &s(rw), &s(ro), anonymous)
            .unwrap()
    }

    fn subject(text: &str) -> Subject {
        Subject::from_rfc4514(text.to_owned()).unwrap()
    }

    #[test]
    fn a_subject_in_read_write_types_in_read_only_watches_and_in_neither_is_refused() {
        let s = settings(&["CN=alice,O=Example"], &["CN=bob"], Anonymous::Refuse);
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,O=Example"))),
            Ok(Role::ReadWrite)
        );
        assert_eq!(
            s.role_of(Some(&subject("CN=bob,O=Other"))),
            Ok(Role::ReadOnly)
        );
        assert_eq!(s.role_of(Some(&subject("CN=bob"))), Ok(Role::ReadOnly));
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,O=Other"))),
            Err(Refusal::NotListed),
            "a full subject matches the whole subject only"
        );
        assert_eq!(
            s.role_of(Some(&subject("CN=carol"))),
            Err(Refusal::NotListed)
        );
        assert_eq!(s.role_of(None), Err(Refusal::NoCertificate));
    }

    #[test]
    fn in_both_lists_is_read_write() {
        let s = settings(&["CN=alice"], &["CN=alice"], Anonymous::Refuse);
        assert_eq!(s.role_of(Some(&subject("CN=alice"))), Ok(Role::ReadWrite));
    }

    #[test]
    fn without_lists_any_certificate_is_read_only_and_anonymous_follows_its_setting() {
        let s = settings(&[], &[], Anonymous::Refuse);
        assert_eq!(s.role_of(Some(&subject("CN=anyone"))), Ok(Role::ReadOnly));
        assert_eq!(s.role_of(None), Err(Refusal::NoCertificate));
        let s = settings(&[], &[], Anonymous::ReadOnly);
        assert_eq!(s.role_of(None), Ok(Role::ReadOnly));
        let s = settings(&["CN=alice"], &[], Anonymous::ReadOnly);
        assert_eq!(s.role_of(None), Ok(Role::ReadOnly));
    }

    #[test]
    fn types_compare_without_case_spaces_are_ignored_values_compare_exactly() {
        let s = settings(&["cn = alice , o=Example"], &[], Anonymous::Refuse);
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,O=Example"))),
            Ok(Role::ReadWrite)
        );
        assert_eq!(
            s.role_of(Some(&subject("CN=Alice,O=Example"))),
            Err(Refusal::NotListed)
        );
        // Escapes are part of the value: a comma in a value does not split it.
        let s = settings(&["CN=alice,O=Example\\, Inc."], &[], Anonymous::Refuse);
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,O=Example\\, Inc."))),
            Ok(Role::ReadWrite)
        );
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,O=Example,O=Inc."))),
            Err(Refusal::NotListed)
        );
    }

    #[test]
    fn a_bare_cn_needs_a_subject_with_exactly_that_one_cn() {
        let s = settings(&["CN=alice"], &[], Anonymous::Refuse);
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,OU=ops,O=Example"))),
            Ok(Role::ReadWrite)
        );
        assert_eq!(
            s.role_of(Some(&subject("CN=alice,CN=bob,O=Example"))),
            Err(Refusal::NotListed),
            "two CNs: only a full entry names it"
        );
        assert_eq!(
            s.role_of(Some(&subject("O=alice"))),
            Err(Refusal::NotListed)
        );
        // A CN with more after '+' (a multi-valued RDN) is not the bare CN.
        assert_eq!(
            s.role_of(Some(&subject("CN=alice+UID=7,O=Example"))),
            Err(Refusal::NotListed)
        );
    }

    #[test]
    fn malformed_entries_are_refused_naming_the_list() {
        for bad in [
            "",
            "alice",
            "=alice",
            "CN=a,",
            "CN=a\\",
            "C N=a",
            "CN=a\u{7}",
        ] {
            let e = TlsSettings::from_lists(
                "a".into(),
                "d".into(),
                &[],
                &[bad.to_owned()],
                Anonymous::Refuse,
            )
            .unwrap_err();
            assert!(
                e.starts_with("tls_read_only: invalid subject"),
                "{bad:?}: {e}"
            );
        }
        let long = format!("CN={}", "a".repeat(MAX_PATTERN));
        assert!(Pattern::try_from(long).is_err());
        assert_eq!(Anonymous::parse("read-only"), Ok(Anonymous::ReadOnly));
        assert!(Anonymous::parse("allow")
            .unwrap_err()
            .contains("\"refuse\""));
    }

    #[test]
    fn the_state_carries_the_settings_the_credentials_and_the_listener() {
        use crate::handover::state::{ConsoleExt, Fd};
        let ext = ConsoleExt::Tls {
            settings: settings(&["CN=alice,O=Example"], &["CN=bob"], Anonymous::ReadOnly),
            pems: Pems {
                ca: b"ca".to_vec(),
                cert: b"cert".to_vec(),
                key: b"key".to_vec(),
                crl: None,
            },
            listener: Fd {
                raw: 9,
                dev: 1,
                ino: 2,
            },
        };
        let bytes = logd_protocol::codec::encode(&vec![ext.clone()]).unwrap();
        let back: Vec<ConsoleExt> = logd_protocol::codec::decode(&bytes).unwrap();
        assert_eq!(back, vec![ext]);
        // Variant 0 of the list, then the settings, the lists as written.
        assert_eq!(bytes[..2], [1, 0]);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("CN=alice,O=Example"), "{text}");
    }

    #[test]
    fn the_tls_options_go_together() {
        use logd_protocol::ConsoleOption as O;
        let req = |opts: Vec<O>| {
            let mut t = TlsOptions::default();
            for o in opts {
                assert!(!t.take(o), "given once");
            }
            t.request()
        };
        assert_eq!(req(vec![]), Ok(None));
        let r = req(vec![O::Tls("4556".into()), O::TlsDir("pki".into())])
            .unwrap()
            .unwrap();
        assert_eq!((r.addr.as_str(), r.anonymous), ("4556", Anonymous::Refuse));
        assert!(req(vec![O::Tls("1".into())])
            .unwrap_err()
            .contains("--tls-dir"));
        assert!(req(vec![O::TlsDir("d".into())])
            .unwrap_err()
            .contains("needs --tls"));
        assert!(req(vec![O::TlsReadOnly(vec![])])
            .unwrap_err()
            .contains("need --tls"));
        let e = req(vec![
            O::Tls("1".into()),
            O::TlsDir("d".into()),
            O::TlsAnonymous("allow".into()),
        ])
        .unwrap_err();
        assert!(e.contains("\"allow\""), "{e}");
        let mut t = TlsOptions::default();
        assert!(!t.take(O::Tls("1".into())));
        assert!(t.take(O::Tls("2".into())), "twice");
    }

    #[test]
    fn a_pattern_is_carried_as_written() {
        let p = Pattern::try_from("cn=alice, O=Example".to_owned()).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"cn=alice, O=Example\"");
        let back: Pattern = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
