//! A virtlogd of the bench's own, driven as a process: started with its sockets passed by
//! socket activation, killed when dropped.
//!
//! Running as root, virtlogd listens on `/run/libvirt/virtlogd-sock` and
//! `/run/libvirt/virtlogd-admin-sock`; no option moves them. But it takes its listening sockets
//! from systemd socket activation, as on a systemd host (`LISTEN_PID`, `LISTEN_FDS` and
//! `LISTEN_FDNAMES` naming `virtlogd.socket` and `virtlogd-admin.socket`). So the bench binds
//! both sockets in its own temporary directory and passes them that way: a virtlogd of the
//! system, if any, is left alone. The pid file goes to the temporary directory too (`-p`).
//! virtlogd still creates `/run/libvirt` and a token in `/run/libvirt/common` at start; the
//! bench removes them afterwards if `/run/libvirt` was not there before.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use logd::rotate::RotateConfig;
use logd_kit::{last_lines, temp_dir, TempDir};

use crate::report::note;
use crate::CALL_TIMEOUT;

use super::rpc::RpcClient;
use super::{START_TIMEOUT, VIRTLOGD};

/// The directory a root virtlogd creates at start, even when its sockets come from activation,
/// and what it puts there (libvirt's system identity token): the bench removes these, and only
/// these, when it was its virtlogd that made the directory.
const RUN_DIR: &str = "/run/libvirt";
const RUN_DIR_MADE: [&str; 3] = [
    "/run/libvirt/common/system.token",
    "/run/libvirt/common",
    RUN_DIR,
];
/// The socket names virtlogd looks for in `LISTEN_FDNAMES`, in the order of fds 3 and 4.
const ACTIVATION_NAMES: &str = "virtlogd.socket:virtlogd-admin.socket";

/// A virtlogd in its own temporary directory, with sockets passed by activation; killed when
/// dropped (and `/run/libvirt` removed if it made it).
pub(super) struct Virtlogd {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
    /// `/run/libvirt` was not there before this virtlogd started.
    made_run_dir: bool,
}

impl Virtlogd {
    /// Starts virtlogd in a new directory under `parent`, its logs rotating as `rotate` says.
    #[allow(unsafe_code)] // one block: the fork hook that puts the sockets at fds 3 and 4
    pub(super) fn spawn(parent: &Path, tag: &str, rotate: RotateConfig) -> Result<Virtlogd> {
        let dir = temp_dir(parent, &format!("logd-bench-{tag}-"))?;
        let config = dir.path().join("virtlogd.conf");
        fs::write(&config, config_text(rotate)).context("writing virtlogd's config")?;
        fs::create_dir(dir.path().join("logs")).context("creating the logs' directory")?;
        let socket = dir.path().join("virtlogd-sock");
        let admin = dir.path().join("virtlogd-admin-sock");
        let bind = |path: &Path| {
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
        };
        let listeners = [bind(&socket)?, bind(&admin)?];
        let raw = listeners.each_ref().map(AsRawFd::as_raw_fd);
        let stderr = File::create(dir.path().join("virtlogd.stderr"))
            .context("creating virtlogd's stderr file")?;
        let made_run_dir = !Path::new(RUN_DIR).exists();
        let mut cmd = Command::new("/bin/sh");
        // The shell's pid is the one virtlogd will have once the shell execs it.
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ && export LISTEN_PID && exec "$0" "$@""#)
            .arg(VIRTLOGD)
            .arg("-f")
            .arg(&config)
            .arg("-p")
            .arg(dir.path().join("virtlogd.pid"))
            .env("LISTEN_FDS", "2")
            .env("LISTEN_FDNAMES", ACTIVATION_NAMES)
            .env_remove("LISTEN_PID")
            .env_remove("NOTIFY_SOCKET")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(
                stderr
                    .try_clone()
                    .context("duplicating virtlogd's stderr file")?,
            )
            .stderr(stderr);
        // SAFETY: the closure runs in the child between fork and exec and only calls fcntl and
        // dup2, which are async-signal-safe; `raw` stays open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way of fds 3 and 4 first (close-on-exec, so these copies go at
                // exec), then onto them (dup2 clears close-on-exec).
                let mut moved = [0; 2];
                for (to, from) in moved.iter_mut().zip(raw) {
                    *to = nix::libc::fcntl(from, nix::libc::F_DUPFD_CLOEXEC, 5);
                    if *to < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (to, from) in (3..).zip(moved) {
                    if nix::libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {VIRTLOGD}"))?;
        // virtlogd has its copies: with ours closed, its exit closes the sockets, and a client
        // waiting for its first answer sees that at once.
        drop(listeners);
        Ok(Virtlogd {
            child,
            dir,
            socket,
            made_run_dir,
        })
    }

    /// A client on the daemon's socket, once the daemon answers. The socket listens from the
    /// start (this process bound it), so only an answer says that virtlogd runs.
    pub(super) fn client(&mut self) -> Result<RpcClient> {
        let mut client = RpcClient::connect(&self.socket, "virtlogd", START_TIMEOUT)?;
        if let Err(e) = client.ping() {
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("virtlogd exited at start ({st}): {}", self.stderr_tail());
            }
            return Err(e.context(self.failed("waiting for virtlogd's first answer")));
        }
        let comm = fs::read_to_string(format!("/proc/{}/comm", self.pid())).unwrap_or_default();
        ensure!(
            comm.trim() == "virtlogd",
            "pid {} is {:?}, not virtlogd",
            self.pid(),
            comm.trim()
        );
        client.set_timeout(CALL_TIMEOUT)?;
        Ok(client)
    }

    /// virtlogd's pid: the shell's, which exec'd it.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The socket clients connect to.
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(super) fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The last lines virtlogd wrote to stderr, to explain a failure.
    fn stderr_tail(&self) -> String {
        last_lines(&self.dir.path().join("virtlogd.stderr"), 5)
    }

    /// A context line for a failed step: the step, and what virtlogd said last.
    pub(super) fn failed(&self, what: &str) -> String {
        format!("{what} (virtlogd's last words: {:?})", self.stderr_tail())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.made_run_dir {
            self.made_run_dir = false;
            for path in RUN_DIR_MADE.map(Path::new) {
                let removed = if path.is_dir() {
                    fs::remove_dir(path)
                } else {
                    fs::remove_file(path)
                };
                if let Err(e) = removed.or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }) {
                    note(format!(
                        "virtlogd made {RUN_DIR}; the bench could not remove {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

impl Drop for Virtlogd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// virtlogd's config: the rotation given (logd-bench's, as given to logd), errors only, to
/// stderr.
fn config_text(rotate: RotateConfig) -> String {
    format!(
        "log_level = 4\nlog_outputs = \"4:stderr\"\nmax_size = {}\nmax_backups = {}\n",
        { rotate.max_size },
        { rotate.max_backups }
    )
}
