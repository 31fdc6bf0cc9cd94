//! Tests of real TLS sessions over loopback: the credentials in `testdata/` (a CA, a server
//! certificate for localhost, a client certificate `CN=alice,OU=ops,O=Example\, Inc.`; made with
//! openssl, valid for 100 years), rustls as the client in a thread, and the console's side
//! ([`Handshake`], [`TlsStream`]) driven by readiness in a current-thread runtime, as a worker
//! drives it.

use std::future::poll_fn;
use std::io::{IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::accept::Handshake;
use super::stream::TlsStream;
use super::*;

const CA: &str = include_str!("testdata/ca-cert.pem");
const SERVER_CERT_PEM: &str = include_str!("testdata/server-cert.pem");
const SERVER_KEY_PEM: &str = include_str!("testdata/server-key.pem");
const CLIENT_CERT: &str = include_str!("testdata/client-cert.pem");
const CLIENT_KEY: &str = include_str!("testdata/client-key.pem");
const T: Duration = Duration::from_secs(10);

fn pems() -> Pems {
    Pems {
        ca: CA.into(),
        cert: SERVER_CERT_PEM.into(),
        key: SERVER_KEY_PEM.into(),
        crl: None,
    }
}

fn server() -> Arc<rustls::ServerConfig> {
    Credentials::from_pems(Path::new("testdata"), pems())
        .unwrap()
        .server
}

/// A blocking rustls client of `addr`, trusting the test CA, showing the client certificate
/// (`cert` and `key`, PEM) if given.
fn client(
    addr: std::net::SocketAddr,
    cert: Option<(&str, &str)>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Runs `f` in a current-thread runtime with a listener on 127.0.0.1.
fn with_listener(f: impl AsyncFnOnce(tokio::net::TcpListener)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        f(l).await
    });
}

/// Accepts one peer and runs its handshake to the end.
async fn handshake(
    l: &tokio::net::TcpListener,
) -> (Handshake, Result<(), super::accept::HandshakeError>) {
    let (tcp, addr) = l.accept().await.unwrap();
    let mut h = Handshake::new(tcp, addr, server()).unwrap();
    let r = tokio::time::timeout(T, poll_fn(|cx| h.poll(cx)))
        .await
        .expect("the handshake ended");
    (h, r)
}

/// Reads from `s` until it has `n` bytes or the peer closed.
async fn read(s: &mut TlsStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    while got.len() < n {
        tokio::time::timeout(T, poll_fn(|cx| s.poll_read_ready(cx)))
            .await
            .expect("readable")
            .unwrap();
        match s.try_read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

#[test]
fn the_credentials_read_and_their_errors_name_the_file() {
    assert!(Credentials::from_pems(Path::new("d"), pems()).is_ok());
    let bad = |p: Pems| {
        Credentials::from_pems(Path::new("/pki"), p)
            .unwrap_err()
            .to_string()
    };
    let e = bad(Pems {
        key: b"nothing".to_vec(),
        ..pems()
    });
    assert!(e.starts_with("/pki/server-key.pem: no private key"), "{e}");
    let e = bad(Pems {
        ca: b"nothing".to_vec(),
        ..pems()
    });
    assert!(e.starts_with("/pki/ca-cert.pem: no certificate"), "{e}");
    let e = bad(Pems {
        key: CLIENT_KEY.into(),
        ..pems()
    });
    assert!(e.contains("not a usable server identity"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = Credentials::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("ca-cert.pem: No such file"), "{e}");
}

#[test]
fn a_client_certificate_is_known_by_its_subject_and_data_goes_both_ways() {
    with_listener(async |l| {
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut c = client(addr, Some((CLIENT_CERT, CLIENT_KEY)));
            c.write_all(b"typed by alice").unwrap();
            c.flush().unwrap();
            let mut got = [0u8; 6];
            c.read_exact(&mut got).unwrap();
            c.conn.send_close_notify();
            c.flush().unwrap();
            got
        });
        let (h, r) = handshake(&l).await;
        r.unwrap();
        let cert = h.conn.peer_certificates().unwrap()[0].clone();
        let subject = Subject::of(&cert).unwrap();
        // As `openssl x509 -noout -subject -nameopt RFC2253` prints it.
        assert_eq!(subject.text, "CN=alice,OU=ops,O=Example\\, Inc.");
        let s = settings_rw(&["CN=alice,OU=ops,O=Example\\, Inc."]);
        assert_eq!(s.role_of(Some(&subject)), Ok(Role::ReadWrite));
        assert_eq!(
            settings_rw(&["CN=alice"]).role_of(Some(&subject)),
            Ok(Role::ReadWrite)
        );
        let mut s = TlsStream::new(h.tcp, h.conn).unwrap();
        assert_eq!(read(&mut s, 14).await, b"typed by alice");
        let n = s
            .try_write_vectored(&[IoSlice::new(b"to "), IoSlice::new(b"you")])
            .unwrap();
        assert_eq!(n, 6);
        tokio::time::timeout(T, poll_fn(|cx| s.poll_send_held(cx)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&peer.join().unwrap(), b"to you");
        assert_eq!(read(&mut s, 1).await, b"", "close_notify reads as the end");
    });
}

#[test]
fn without_a_certificate_the_handshake_passes_and_no_subject_is_given() {
    with_listener(async |l| {
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut c = client(addr, None);
            c.write_all(b"x").unwrap();
            c.flush().unwrap();
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
        });
        let (h, r) = handshake(&l).await;
        r.unwrap();
        assert!(h.conn.peer_certificates().is_none());
        drop(h);
        peer.join().unwrap();
    });
}

#[test]
fn a_certificate_not_for_client_use_fails_the_handshake() {
    with_listener(async |l| {
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            // The server's own certificate: signed by the CA, but for serverAuth only.
            let mut c = client(addr, Some((SERVER_CERT_PEM, SERVER_KEY_PEM)));
            let _ = c.write_all(b"x").and_then(|()| c.flush());
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap_err()
        });
        let (_, r) = handshake(&l).await;
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("TLS handshake failed: invalid peer certificate"),
            "{e}"
        );
        let told = peer.join().unwrap().to_string();
        assert!(told.contains("alert") || told.contains("Alert"), "{told}");
    });
}

#[test]
fn a_peer_that_speaks_no_tls_fails_the_handshake_at_once() {
    with_listener(async |l| {
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
        });
        let (h, r) = handshake(&l).await;
        assert!(r
            .unwrap_err()
            .to_string()
            .starts_with("TLS handshake failed"));
        drop(h);
        peer.join().unwrap();
    });
}

/// A client that does not read: what the console's side holds is bounded (plaintext is taken
/// only once the socket took what came before), so the subscriber's queue fills as on TCP.
#[test]
fn a_client_that_does_not_read_holds_back_the_writer() {
    with_listener(async |l| {
        let addr = l.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let mut c = client(addr, Some((CLIENT_CERT, CLIENT_KEY)));
            c.write_all(b"hi").unwrap();
            c.flush().unwrap();
            // Reads nothing until the test is done.
            let _ = done_rx.recv_timeout(T);
        });
        let (h, r) = handshake(&l).await;
        r.unwrap();
        let mut s = TlsStream::new(h.tcp, h.conn).unwrap();
        let chunk = vec![b'o'; 64 * 1024];
        let mut taken = 0usize;
        let mut blocked = false;
        for _ in 0..100_000 {
            match s.try_write_vectored(&[IoSlice::new(&chunk)]) {
                Ok(n) => {
                    assert!(n <= 16 * 1024, "{n}");
                    taken += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(blocked, "took {taken} bytes without ever blocking");
        let held = s.held();
        assert!(held <= 17 * 1024 + 1024, "held {held}");
        assert!(taken < 64 << 20, "{taken}");
        done_tx.send(()).unwrap();
        peer.join().unwrap();
    });
}

fn settings_rw(rw: &[&str]) -> TlsSettings {
    let rw: Vec<String> = rw.iter().map(|s| s.to_string()).collect();
    TlsSettings::from_lists(
        "127.0.0.1:1".into(),
        "d".into(),
        &rw,
        &[],
        Anonymous::Refuse,
    )
    .unwrap()
}
