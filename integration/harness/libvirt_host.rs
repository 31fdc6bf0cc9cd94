//! A private libvirt host for one test: libvirtd, a log daemon (logd serving virtlogd's
//! protocol, or the real virtlogd) and the QEMU guests libvirtd starts, all in a mount namespace
//! of their own.
//!
//! A holder process (`unshare -m … exec sleep`) keeps the namespace. In it, per-test directories
//! are bound over `/run`, `/var/log`, `/var/lib`, `/var/cache` and `/etc/libvirt`, and copies of
//! `/etc/passwd` and `/etc/group` that add the `libvirt-qemu` user Debian's libvirtd insists on
//! finding (even with `user = "root"`). Every daemon and every `virsh` runs in the namespace with
//! `nsenter -t HOLDER -m`, so nothing of the host changes and hosts run in parallel. The network
//! is the host's: TCP serials are reached from the test directly. Dropping the host kills every
//! process in the namespace, by pid.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// How long any one step (a daemon starting, a domain starting, a virsh command) may take.
pub const STEP: Duration = Duration::from_secs(60);

/// The log daemon libvirtd talks to on `/run/libvirt/virtlogd-sock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogDaemon {
    /// logd with `--virtlogd-socket`.
    Logd,
    /// The real `/usr/sbin/virtlogd`, to check the environment itself (the logd-only checks are
    /// skipped).
    Virtlogd,
}

impl LogDaemon {
    /// logd, unless `LOGD_LIBVIRT_LOG_DAEMON=virtlogd`.
    pub fn from_env() -> LogDaemon {
        match std::env::var("LOGD_LIBVIRT_LOG_DAEMON").as_deref() {
            Ok("virtlogd") => LogDaemon::Virtlogd,
            Ok("logd") | Err(_) => LogDaemon::Logd,
            Ok(other) => panic!("LOGD_LIBVIRT_LOG_DAEMON={other}: expected logd or virtlogd"),
        }
    }
}

/// Inside the namespace: where libvirtd expects the log daemon, and logd's own sockets.
pub const VIRTLOGD_SOCK: &str = "/run/libvirt/virtlogd-sock";
pub const LOGD_SOCK: &str = "/run/logd/logd.sock";
pub const LOGD_ROOT: &str = "/var/log/logd";
/// Where libvirt keeps a domain's logs, inside the namespace.
pub const QEMU_LOG_DIR: &str = "/var/log/libvirt/qemu";

const QEMU_CONF: &str = r#"# Root QEMU, no cgroups, namespaces, SELinux/AppArmor or chown: a container without systemd.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
# QEMU's stdout/stderr and serial logs go through the log daemon (virtlogd's protocol).
stdio_handler = "logd"
"#;

const LIBVIRTD_CONF: &str = "auth_unix_rw = \"none\"\n";

/// A running libvirt host; see the module's comment.
pub struct LibvirtHost {
    /// The namespace's directories (`run`, `log`, `lib`, `cache`, `etc`), the guest image, the
    /// daemons' stderr and the domains' XML.
    pub dir: tempfile::TempDir,
    pub daemon: LogDaemon,
    /// The test guest (integration/guest/guest.asm).
    pub img: PathBuf,
    holder: Child,
    log_daemon: Option<Child>,
    libvirtd: Option<Child>,
}

impl LibvirtHost {
    /// Starts a host, or returns None (skipped) without root or the tools; with
    /// LOGD_REQUIRE_QEMU=1 a missing tool fails instead.
    pub fn start(daemon: LogDaemon) -> Option<LibvirtHost> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("LOGD_REQUIRE_QEMU").as_deref() != Ok("1"),
                "the libvirt tests need root (mount namespaces), and LOGD_REQUIRE_QEMU=1"
            );
            eprintln!("skipped: the libvirt tests need root (mount namespaces)");
            return None;
        }
        let mut tools = vec![
            "qemu-system-x86_64",
            "libvirtd",
            "virsh",
            "unshare",
            "nsenter",
            "mount",
        ];
        if daemon == LogDaemon::Virtlogd {
            tools.push("virtlogd");
        }
        for tool in tools {
            require_tool(tool)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("logd-libvirt-")
            .tempdir()
            .unwrap();
        let img = build_guest(dir.path())?;
        let root = dir.path();
        for sub in [
            "run/lock",
            "log/libvirt/qemu",
            "lib",
            "cache",
            "etc",
            "holder",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("etc/qemu.conf"), QEMU_CONF).unwrap();
        std::fs::write(root.join("etc/libvirtd.conf"), LIBVIRTD_CONF).unwrap();
        for (file, line) in [
            (
                "passwd",
                "libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin",
            ),
            ("group", "libvirt-qemu:x:64055:"),
        ] {
            let mut text = std::fs::read_to_string(Path::new("/etc").join(file)).unwrap();
            if !text.lines().any(|l| l.starts_with("libvirt-qemu:")) {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(root.join("holder").join(file), text).unwrap();
        }

        let r = root.display();
        let ready = root.join("holder/ready");
        // The holder makes the mounts, says so (`ready`), then only sleeps: it keeps the
        // namespace until it is killed, and no test waits on it.
        let script = format!(
            "set -e; \
             mount --bind {r}/run /run; \
             mount --bind {r}/log /var/log; \
             mount --bind {r}/lib /var/lib; \
             mount --bind {r}/cache /var/cache; \
             mount --bind {r}/etc /etc/libvirt; \
             mount --bind {r}/holder/passwd /etc/passwd; \
             mount --bind {r}/holder/group /etc/group; \
             touch {ready}; \
             exec sleep 1000000",
            ready = ready.display()
        );
        let holder_err = std::fs::File::create(root.join("holder.stderr")).unwrap();
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(holder_err)
            .spawn()
            .expect("spawn unshare");
        let mut host = LibvirtHost {
            dir,
            daemon,
            img,
            holder,
            log_daemon: None,
            libvirtd: None,
        };
        wait_for(STEP, "the namespace's mounts", || {
            if let Some(st) = host.holder.try_wait().unwrap() {
                panic!(
                    "the namespace holder exited ({st}): {}",
                    host.file("holder.stderr")
                );
            }
            ready.exists().then_some(())
        });

        host.start_log_daemon();
        host.start_libvirtd();
        Some(host)
    }

    /// The pid of the process holding the namespace (for `nsenter -t PID -m`).
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command run in the namespace.
    pub fn ns(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--", program]);
        c
    }

    /// The host's path of a path inside the namespace (under one of the bound directories).
    pub fn host_path(&self, inside: &str) -> PathBuf {
        let root = self.dir.path();
        for (prefix, sub) in [
            ("/run/", "run"),
            ("/var/log/", "log"),
            ("/var/lib/", "lib"),
            ("/var/cache/", "cache"),
            ("/etc/libvirt/", "etc"),
        ] {
            if let Some(rest) = inside.strip_prefix(prefix) {
                return root.join(sub).join(rest);
            }
        }
        panic!("{inside} is not under a directory of the namespace")
    }

    /// A file of the host's directory, as text ("" if absent).
    pub fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    /// A daemon in the namespace, its stderr in `NAME.stderr`.
    fn spawn_daemon(&self, name: &str, program: &str, args: &[&str]) -> Child {
        let err = std::fs::File::create(self.dir.path().join(format!("{name}.stderr"))).unwrap();
        self.ns(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
    }

    /// Waits until `sock` (a path inside the namespace) accepts connections.
    fn wait_socket(&mut self, which: &str, sock: &str) {
        let path = self.host_path(sock);
        wait_for(STEP, &format!("{which} to listen on {sock}"), || {
            let exited = [&mut self.log_daemon, &mut self.libvirtd]
                .into_iter()
                .flatten()
                .find_map(|c| c.try_wait().unwrap());
            if let Some(st) = exited {
                panic!("a daemon exited at start ({st}):\n{}", self.diagnostics());
            }
            UnixStream::connect(&path).is_ok().then_some(())
        });
    }

    fn start_log_daemon(&mut self) {
        self.log_daemon = Some(match self.daemon {
            LogDaemon::Virtlogd => self.spawn_daemon("virtlogd", "virtlogd", &[]),
            LogDaemon::Logd => self.spawn_daemon(
                "logd",
                LOGD,
                &[
                    "--virtlogd-socket",
                    VIRTLOGD_SOCK,
                    "--socket",
                    LOGD_SOCK,
                    "--log-root",
                    LOGD_ROOT,
                    "-v",
                ],
            ),
        });
        if self.daemon == LogDaemon::Logd {
            self.wait_socket("logd", LOGD_SOCK);
        }
        self.wait_socket("the log daemon", VIRTLOGD_SOCK);
    }

    fn start_libvirtd(&mut self) {
        self.libvirtd = Some(self.spawn_daemon("libvirtd", "libvirtd", &[]));
        self.wait_socket("libvirtd", "/run/libvirt/libvirt-sock");
        self.virsh_ok(&["list", "--all"]);
    }

    /// Stops libvirtd (SIGTERM: its running domains go on) and waits until it has exited.
    pub fn stop_libvirtd(&mut self) {
        let mut c = self.libvirtd.take().expect("libvirtd runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_for(STEP, "libvirtd to exit", || c.try_wait().unwrap());
    }

    /// Starts libvirtd again (after `stop_libvirtd`), and waits until it answers.
    pub fn restart_libvirtd(&mut self) {
        assert!(self.libvirtd.is_none(), "libvirtd was stopped first");
        self.start_libvirtd();
    }

    /// What the daemons said, for a failure message.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        for name in ["holder", "virtlogd", "logd", "libvirtd"] {
            let text = self.file(&format!("{name}.stderr"));
            if !text.is_empty() {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                s.push_str(&format!("--- {name} stderr (last lines):\n"));
                for l in tail.iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// `virsh -c qemu:///system ARGS` in the namespace, bounded.
    pub fn virsh(&self, args: &[&str]) -> Output {
        run_bounded(
            self.ns("virsh").args(["-c", "qemu:///system"]).args(args),
            STEP,
        )
    }

    /// `virsh ARGS`, asserting success; returns stdout.
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let out = self.virsh(args);
        assert!(
            out.status.success(),
            "virsh {args:?} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `xml` to `NAME.xml` in the host's directory; returns its path.
    pub fn write_xml(&self, name: &str, xml: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(&p, xml).unwrap();
        p
    }

    /// `virsh create` of a transient domain; returns virsh's output.
    pub fn create(&self, name: &str, xml: &str) -> Output {
        let p = self.write_xml(name, xml);
        self.virsh(&["create", p.to_str().unwrap()])
    }

    /// `virsh create`, asserting success.
    pub fn create_ok(&self, name: &str, xml: &str) {
        let out = self.create(name, xml);
        assert!(
            out.status.success(),
            "virsh create {name} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
    }

    /// The pid of a running domain's QEMU.
    pub fn qemu_pid(&self, name: &str) -> i32 {
        let p = self.host_path(&format!("/run/libvirt/qemu/{name}.pid"));
        wait_for(STEP, &format!("the pid of {name}'s QEMU"), || {
            std::fs::read_to_string(&p)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|&pid| process_alive(pid))
        })
    }

    /// The pid of the serving log daemon (logd's changes at each re-exec).
    pub fn log_daemon_pid(&self) -> i32 {
        if self.daemon == LogDaemon::Logd {
            let lock = self.host_path(&format!("{LOGD_SOCK}.lock"));
            if let Some(pid) = std::fs::read_to_string(lock)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
        }
        self.log_daemon.as_ref().unwrap().id() as i32
    }

    /// A libvirt log (a path under /var/log/libvirt/qemu) as the host sees it.
    pub fn qemu_log(&self, file: &str) -> PathBuf {
        self.host_path(&format!("{QEMU_LOG_DIR}/{file}"))
    }

    /// `logdctl --socket LOGD_SOCK ARGS` in the namespace, bounded.
    pub fn ctl(&self, args: &[&str]) -> Output {
        assert_eq!(self.daemon, LogDaemon::Logd, "logdctl needs logd");
        run_bounded(
            self.ns(LOGDCTL)
                .args(args)
                .args(["--socket", LOGD_SOCK])
                .env_remove("LOGD_SOCKET")
                .env_remove("LOGD_AUTOSTART"),
            STEP,
        )
    }

    /// `logdctl ARGS`, asserting success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "logdctl {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Re-executes logd with SIGUSR1 and waits until the new image serves; returns its pid
    /// (the same).
    pub fn reexec_logd(&self) -> i32 {
        assert_eq!(self.daemon, LogDaemon::Logd, "only logd re-executes");
        let old = self.log_daemon_pid();
        let before = {
            let out = self.ctl(&["ps", "--json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["reexecs"]
                .as_u64()
                .unwrap()
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        // It answers: the admin snapshot comes from the new image, in the same pid.
        wait_for(STEP, "the new logd image to answer", || {
            let out = self.ctl(&["ps", "--json"]);
            let snap: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (snap["reexecs"] == before + 1).then_some(())
        });
        assert_eq!(self.log_daemon_pid(), old, "a re-exec keeps the pid");
        old
    }

    /// Every process in the namespace (the holder included).
    pub fn processes(&self) -> Vec<i32> {
        let me = self.holder.id() as i32;
        let Ok(ns) = std::fs::read_link(format!("/proc/{me}/ns/mnt")) else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .as_ref()
                == Some(&ns)
            {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for LibvirtHost {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("LOGD_LIBVIRT_VERBOSE").is_some() {
            eprintln!("{}", self.diagnostics());
        }
        let kill = |pid: i32| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        // libvirtd first, so that it starts nothing more; then everything else in the namespace
        // (QEMUs, a re-executed logd), the holder last.
        if let Some(c) = &self.libvirtd {
            kill(c.id() as i32);
        }
        let holder = self.holder.id() as i32;
        for _ in 0..3 {
            for pid in self.processes() {
                if pid != holder {
                    kill(pid);
                }
            }
        }
        kill(holder);
        for c in [&mut self.libvirtd, &mut self.log_daemon]
            .into_iter()
            .flatten()
        {
            let _ = c.wait();
        }
        let _ = self.holder.wait();
    }
}
