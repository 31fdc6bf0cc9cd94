//! Reaching logd: the main and admin sockets, each checked for who serves it (root, our own uid,
//! or `--server-uid`), and a daemon started in the background when none answers (`--autostart`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use logd_protocol::client::{Client, ClientError};

/// `--server-uid`: a uid trusted to serve logd besides root and our own.
pub(crate) static SERVER_UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

/// The main socket, for the hint of an admin command that finds no daemon.
pub(crate) static MAIN_SOCKET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Connects to the admin socket, checking who serves it.
pub(crate) fn admin_connect(socket: &Path) -> anyhow::Result<logd_protocol::client::AdminClient> {
    logd_protocol::client::AdminClient::connect_trusting(
        socket,
        SERVER_UID.get().copied().flatten(),
    )
    .map_err(|e| {
        let main = MAIN_SOCKET.get().map_or(socket, |p| p.as_path());
        no_daemon(e, main, false)
    })
}

/// A connection that found nobody (no socket, or nobody listening on it) says which socket was
/// tried and how to get a daemon there; other errors pass as they are.
fn no_daemon(e: ClientError, main: &Path, autostart_hint: bool) -> anyhow::Error {
    let ClientError::Connect { path, source } = &e else {
        return e.into();
    };
    if !matches!(
        source.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    ) {
        return e.into();
    }
    // "No such file or directory", without Rust's "(os error 2)".
    let why = source.raw_os_error().map_or_else(
        || source.to_string(),
        |n| nix::errno::Errno::from_raw(n).desc().to_owned(),
    );
    let systemd = if logd::config::is_root() {
        "\"systemctl start logd\" or "
    } else {
        ""
    };
    let also = if autostart_hint {
        ", or pass --autostart"
    } else {
        ""
    };
    anyhow::anyhow!(
        "no logd answers on {} ({why}); start one with {systemd}\"logd --socket {}\"{also}",
        path.display(),
        main.display()
    )
}

/// Connects to the main socket (or the console socket), checking who serves it.
pub(crate) fn client_connect(socket: &Path) -> Result<Client, ClientError> {
    Client::connect_trusting(socket, SERVER_UID.get().copied().flatten())
}

/// Connects to logd, starting one first if allowed and none answers.
pub(crate) fn connect(socket: &Path, autostart: bool) -> anyhow::Result<Client> {
    match client_connect(socket) {
        Ok(c) => return Ok(c),
        Err(ClientError::Connect { source, .. })
            if autostart
                && matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
        Err(e) => return Err(no_daemon(e, socket, true)),
    }
    start_daemon(socket)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client_connect(socket) {
            Ok(c) => return Ok(c),
            Err(ClientError::Connect { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e).context("the logd that logdctl started does not answer"),
        }
    }
}

/// Starts `logd` in the background, in its own session, logging to `logd.log` beside the socket.
fn start_daemon(socket: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("logd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("logd"));
    let dir = socket.parent().unwrap_or(Path::new("/"));
    // Checked before anything is opened or started there: `/tmp/logd-$UID` may have been
    // made by another user, with a `logd.log` symlink planted in it.
    logd::sockdir::ensure(dir, logd::sockdir::Rule::for_socket(socket))?;
    let log_path = dir.join("logd.log");
    let log = logd::sockdir::open_nofollow(&log_path, true)?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--socket")
        .arg(socket)
        .args(["--idle-exit", "30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    eprintln!(
        "logdctl: started logd (pid {}) on {}; its own log is {}",
        child.id(),
        socket.display(),
        log_path.display()
    );
    if child.id() == 0 {
        bail!("logd did not start");
    }
    Ok(())
}
