//! End-to-end tests of a console's TLS listener (issue #16, "TLS for remote consoles"): the real
//! logd and logdctl, real QEMU booting the test guest, certificates made with the real `openssl`
//! CLI in QEMU's `tls-creds-x509` layout, and the real `openssl s_client` as the remote
//! subscriber. Loopback only.
//!
//! A client certificate signed by the console's CA gets its role from its subject; without one,
//! a client is refused, or read-only with `--tls-anonymous read-only`; a certificate of another
//! CA fails the handshake. Every refusal is counted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const BANNER: &[u8] = b"LOGD-GUEST READY\r\n";
const T: Duration = Duration::from_secs(60);
/// The longest one `openssl` command may take.
const OPENSSL_TIME: Duration = Duration::from_secs(30);

/// A daemon and the test guest's image, or None (skipped) without QEMU, nasm or openssl.
fn setup() -> Option<(Daemon, PathBuf)> {
    for tool in ["qemu-system-x86_64", "openssl"] {
        require_tool(tool)?;
    }
    let d = Daemon::start();
    let img = build_guest(d.dir.path())?;
    Some((d, img))
}

/// Runs `openssl ARGS` in `dir`, failing the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = run_bounded(
        Command::new("openssl").current_dir(dir).args(args),
        OPENSSL_TIME,
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` (`NAME-cert.pem`, `NAME-key.pem`), self-signed, P-256.
fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}-cert.pem"),
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `NAME-cert.pem` (key `NAME-key.pem`) for `subj` (openssl's `/O=…/CN=…`),
/// signed by the CA `ca`, with `ext` (an extfile's lines).
fn make_cert(dir: &Path, ca: &str, name: &str, subj: &str, ext: &str) {
    let csr = format!("{name}.csr");
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &csr,
            "-subj",
            subj,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}-cert.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}-cert.pem"),
            "-extfile",
            &extfile,
        ],
    );
}

const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                          extendedKeyUsage=clientAuth\n";

/// The credentials: `DIR/pki/` in QEMU's server layout (`ca-cert.pem`, `server-cert.pem`,
/// `server-key.pem`), and beside them the clients' certificates: `alice` (`CN=alice,O=Example`),
/// `bob` (`CN=bob,O=Example`), `carol` (`CN=carol,O=Example`), all signed by the CA, and
/// `mallory` (`CN=alice,O=Example` too) signed by another CA. Returns `DIR/pki`.
fn make_pki(d: &Daemon) -> PathBuf {
    let pki = d.log("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_ca(&pki, "ca", "logd test CA");
    make_ca(&pki, "other-ca", "another CA");
    make_cert(
        &pki,
        "ca",
        "server",
        "/CN=localhost",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    for who in ["alice", "bob", "carol"] {
        make_cert(&pki, "ca", who, &format!("/O=Example/CN={who}"), CLIENT_EXT);
    }
    make_cert(
        &pki,
        "other-ca",
        "mallory",
        "/O=Example/CN=alice",
        CLIENT_EXT,
    );
    pki
}

/// `logdctl console add` of console `serial0` of domain `vm`, its guest listening at
/// `NAME.sock`, its log `NAME.log`, TLS on a free port with the credentials in `pki`, and
/// `extra`; returns the TLS port.
fn add(d: &Daemon, name: &str, extra: &[&str]) -> u16 {
    let port = free_port().to_string();
    let mut a = vec!["--tls", &port, "--tls-dir", "pki"];
    a.extend_from_slice(extra);
    add_serial0(d, "vm", name, &a);
    port.parse().unwrap()
}

/// QEMU booting the test guest on the console's guest socket; returns once the banner is logged.
fn boot(d: &Daemon, img: &Path, name: &str) -> Proc {
    boot_on(d, img, name)
}

/// `openssl s_client` to the TLS port, trusting the console's CA, with the client certificate
/// `who` (from `pki`) or none.
fn s_client(pki: &Path, port: u16, who: Option<&str>) -> Proc {
    let mut c = Command::new("openssl");
    c.current_dir(pki).args([
        "s_client",
        "-quiet",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-CAfile",
        "ca-cert.pem",
        "-verify_return_error",
    ]);
    if let Some(w) = who {
        c.args([
            "-cert",
            &format!("{w}-cert.pem"),
            "-key",
            &format!("{w}-key.pem"),
        ]);
    }
    Proc::spawn(
        &format!("s_client ({})", who.unwrap_or("no certificate")),
        &mut c,
    )
}

/// The console `serial0` of `vm` in `ps --json`.
fn console_snapshot(d: &Daemon) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"]["name"] == "vm")
        .expect("the domain in ps --json")["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"]["console"]["name"] == "serial0")
        .expect("console serial0 in ps --json")
        .clone()
}

/// The subscriber shown as `peer` in `ps --json`, once it is there.
fn subscriber_shown_as(d: &Daemon, peer: &str) -> serde_json::Value {
    wait_for(T, &format!("subscriber {peer} in ps --json"), || {
        let snap = console_snapshot(d);
        snap["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["peer"] == peer)
            .cloned()
    })
}

/// What came first in `p`'s output: one of `whats`.
fn first_seen(p: &Proc, whats: &[&[u8]]) -> usize {
    wait_for(T, &format!("{} to see one of {whats:?}", p.name), || {
        whats.iter().position(|w| contains(&p.output(), w))
    })
}

/// The console's `refused` count reaches `n`.
fn wait_refused(d: &Daemon, n: u64) {
    wait_for(T, &format!("refused = {n}"), || {
        (console_snapshot(d)["refused"] == n).then_some(())
    });
}

/// A certificate whose subject is in `--tls-read-write` types into the guest: its input is in the
/// console's log, and `ps --json` shows it by its subject, read-write, holding the lock. One in
/// `--tls-read-only` (by its CN alone) watches, and its input is discarded.
#[test]
fn a_read_write_certificate_types_into_the_guest_and_is_shown_by_its_subject() {
    let Some((d, img)) = setup() else { return };
    let pki = make_pki(&d);
    let port = add(
        &d,
        "rw",
        &[
            "--tls-read-write",
            "CN=alice,O=Example",
            "--tls-read-only",
            "CN=bob",
        ],
    );
    let _q = boot(&d, &img, "rw");
    let mut alice = s_client(&pki, port, Some("alice"));
    alice.wait_for(BANNER, T);
    alice.wait_for(b"you are read-write and hold the write lock", T);
    alice.send(b"over tls\n");
    alice.wait_for(b"OVER TLS\n", T);
    wait_logged(&d, "rw.log", b"OVER TLS");
    let sub = subscriber_shown_as(&d, "CN=alice,O=Example");
    assert_eq!(sub["role"], "read-write", "{sub}");
    assert_eq!(sub["writer"], true, "{sub}");
    let out = d.ctl_ok(&["ps"]);
    assert!(
        contains(&out, b"CN=alice,O=Example"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    let mut bob = s_client(&pki, port, Some("bob"));
    bob.wait_for(b"you are read-only", T);
    bob.send(b"bob types\n");
    let seen = first_seen(&bob, &[b"your input is discarded", b"BOB TYPES"]);
    assert_eq!(seen, 0, "a read-only TLS subscriber typed into the guest");
    let sub = subscriber_shown_as(&d, "CN=bob,O=Example");
    assert_eq!(sub["role"], "read-only", "{sub}");
    alice.send(b"still alice\n");
    bob.wait_for(b"STILL ALICE\n", T);
    assert!(!contains(&read_rotated(&d.log("rw.log"), 10), b"BOB TYPES"));
    assert_eq!(console_snapshot(&d)["refused"], 0);
}

/// Without a certificate: refused by default, with a line saying why, and counted; with
/// `--tls-anonymous read-only` let in read-only, its input discarded and the client told so.
#[test]
fn a_client_without_a_certificate_is_refused_or_read_only_as_configured() {
    let Some((d, img)) = setup() else { return };
    let pki = make_pki(&d);
    let port = add(&d, "anon", &[]);
    let _q = boot(&d, &img, "anon");
    let mut nobody = s_client(&pki, port, None);
    nobody.send(b"anonymous types\n");
    let seen = first_seen(&nobody, &[b"[logd: refused: ", BANNER, b"ANONYMOUS TYPES"]);
    assert_eq!(seen, 0, "{}", String::from_utf8_lossy(&nobody.output()));
    nobody.wait_for(b"needs a client certificate", T);
    wait_refused(&d, 1);
    assert!(d.stderr().contains("no client certificate"), "logged");
    // Any certificate of the CA, with no lists: read-only.
    let carol = s_client(&pki, port, Some("carol"));
    carol.wait_for(b"you are read-only", T);
    drop((nobody, carol));
    d.ctl_ok(&["console", "remove", "--domain", "vm", "--name", "serial0"]);

    let port = add(&d, "anon2", &["--tls-anonymous", "read-only"]);
    let _q2 = boot(&d, &img, "anon2");
    let mut watcher = s_client(&pki, port, None);
    watcher.wait_for(BANNER, T);
    watcher.wait_for(b"you are read-only", T);
    watcher.send(b"anonymous types\n");
    let seen = first_seen(&watcher, &[b"your input is discarded", b"ANONYMOUS TYPES"]);
    assert_eq!(seen, 0, "an anonymous TLS subscriber typed into the guest");
    let snap = wait_for(T, "the anonymous subscriber in ps --json", || {
        let snap = console_snapshot(&d);
        (snap["subscribers"].as_array().unwrap().len() == 1).then_some(snap)
    });
    let sub = &snap["subscribers"][0];
    assert_eq!(sub["role"], "read-only", "{snap}");
    let peer = sub["peer"].as_str().unwrap();
    assert!(peer.starts_with("anonymous@127.0.0.1:"), "{snap}");
    assert!(!contains(
        &read_rotated(&d.log("anon2.log"), 10),
        b"ANONYMOUS TYPES"
    ));
}

/// A certificate the CA signed whose subject is in neither list is refused after its handshake,
/// told why; one signed by another CA (with a listed subject) fails the handshake. Both are
/// counted and logged, and neither reaches the guest. (The console speaks telnet: over TLS too.)
#[test]
fn a_certificate_in_no_list_or_of_another_ca_is_refused_and_counted() {
    let Some((d, img)) = setup() else { return };
    let pki = make_pki(&d);
    // Telnet over TLS, as over TCP.
    let port = add(
        &d,
        "no",
        &["--tls-read-write", "CN=alice,O=Example", "--telnet"],
    );
    let _q = boot(&d, &img, "no");
    let mut carol = s_client(&pki, port, Some("carol"));
    carol.send(b"carol types\n");
    let seen = first_seen(&carol, &[b"[logd: refused: ", BANNER, b"CAROL TYPES"]);
    assert_eq!(seen, 0, "{}", String::from_utf8_lossy(&carol.output()));
    carol.wait_for(
        b"certificate CN=carol,O=Example may not use console serial0",
        T,
    );
    wait_refused(&d, 1);

    let mut mallory = s_client(&pki, port, Some("mallory"));
    mallory.send(b"mallory types\n");
    wait_refused(&d, 2);
    wait_for(T, "the failed handshake logged", || {
        d.stderr().contains("its handshake failed").then_some(())
    });
    assert!(
        !contains(&mallory.output(), BANNER),
        "{}",
        String::from_utf8_lossy(&mallory.output())
    );
    // A listed certificate still works.
    let mut alice = s_client(&pki, port, Some("alice"));
    alice.wait_for(BANNER, T);
    alice.send(b"alice types\n");
    alice.wait_for(b"ALICE TYPES\n", T);
    assert!(
        contains(&alice.output(), &[0xff, 0xfb]),
        "a telnet console negotiates over TLS too (IAC WILL)"
    );
    let log = read_rotated(&d.log("no.log"), 10);
    assert!(!contains(&log, b"CAROL TYPES") && !contains(&log, b"MALLORY TYPES"));
    let snap = console_snapshot(&d);
    assert_eq!(snap["subscribers"].as_array().unwrap().len(), 1, "{snap}");
    assert_eq!(snap["refused"], 2, "{snap}");
}

/// A re-exec keeps the TLS listener (the same port, never closed) and its settings; a TLS
/// subscriber is told to reconnect and closed, and a new one is served by the new image.
#[test]
fn the_tls_listener_keeps_its_port_across_a_reexec() {
    let Some((d, img)) = setup() else { return };
    let pki = make_pki(&d);
    let port = add(&d, "re", &["--tls-read-write", "CN=alice"]);
    let _q = boot(&d, &img, "re");
    let mut before = s_client(&pki, port, Some("alice"));
    before.wait_for(BANNER, T);
    subscriber_shown_as(&d, "CN=alice,O=Example");
    let report: serde_json::Value =
        serde_json::from_slice(&d.ctl_ok(&["reexec", "--json"])).unwrap();
    assert!(report["error"].is_null(), "{report}");
    before.wait_for(b"[logd: logd is re-executing; reconnect]", T);
    wait_for(T, "the old TLS subscriber closed", || {
        before.child.try_wait().unwrap()
    });
    assert!(
        d.stderr().contains("TLS subscriber told to reconnect"),
        "logged"
    );
    let mut after = s_client(&pki, port, Some("alice"));
    after.wait_for(BANNER, T);
    after.send(b"after the reexec\n");
    after.wait_for(b"AFTER THE REEXEC\n", T);
    let sub = subscriber_shown_as(&d, "CN=alice,O=Example");
    assert_eq!(sub["role"], "read-write", "{sub}");
    // Bob is in no list: the settings came through too.
    let bob = s_client(&pki, port, Some("bob"));
    bob.wait_for(b"[logd: refused: ", T);
}

/// A client that speaks no TLS is refused at once; one that says nothing, after the handshake's
/// 10 s. Both are counted and logged, and the console goes on serving.
#[test]
fn a_client_that_speaks_no_tls_or_nothing_is_refused_and_counted() {
    let Some((d, img)) = setup() else { return };
    let pki = make_pki(&d);
    let port = add(&d, "plain", &[]);
    let _q = boot(&d, &img, "plain");
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut plain, b"hello, plain text\r\n").unwrap();
    wait_refused(&d, 1);
    assert!(d.stderr().contains("its handshake failed"), "logged");
    wait_refused(&d, 2);
    assert!(
        d.stderr().contains("no TLS handshake within 10 s"),
        "the silent one is logged"
    );
    drop((silent, plain));
    let carol = s_client(&pki, port, Some("carol"));
    carol.wait_for(BANNER, T);
}
