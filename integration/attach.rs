//! End-to-end tests of `logdctl attach` through logd's console socket (issue #16): the real
//! logd and logdctl in real terminals (tmux), real QEMU booting the test guest, users made with
//! `setpriv`. logd knows who attaches (`SO_PEERCRED` on its console socket), so the console's
//! lists decide: a member of a read-write group may take the write lock, others may not. The
//! escape menu's commands (who, lock, force, spy, replay, BREAK, SysRq, detach) are typed into
//! the terminal as a user would.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);
/// A group named in the console's `--read-write` list, given to uid 65534 by `setpriv`.
const RW_GROUP: u32 = 4242;
/// A uid named in the console's `--read-only` list.
const READER: u32 = 65533;

/// A daemon and the test guest's image, or None (skipped) without QEMU, nasm, tmux or setpriv.
fn setup() -> Option<(Daemon, std::path::PathBuf)> {
    for tool in ["qemu-system-x86_64", "tmux", "setpriv", "nc"] {
        require_tool(tool)?;
    }
    let d = Daemon::start();
    let img = build_guest(d.dir.path())?;
    Some((d, img))
}

/// Console `serial0` of domain `vm`, its guest listening at `NAME.sock`, its log `NAME.log`:
/// no TCP port and no UNIX socket of its own (an attach needs neither); QEMU booted on it.
fn console(d: &Daemon, img: &Path, name: &str, extra: &[&str]) -> Proc {
    add_serial0(d, "vm", name, extra);
    boot_on(d, img, name)
}

/// The `logdctl attach` command line, run as `as_user` (`setpriv` arguments) if given.
fn attach_cmd(d: &Daemon, as_user: Option<&str>, extra: &str) -> String {
    let user = match as_user {
        // Past the test directory's mode 0700 (CAP_DAC_OVERRIDE): only logd's own check of the
        // peer can stop it.
        Some(u) => format!("setpriv {u} --inh-caps=+dac_override --ambient-caps=+dac_override "),
        None => String::new(),
    };
    format!(
        "{user}{LOGDCTL} --socket {} attach --domain vm --name serial0 {extra}",
        d.socket.display()
    )
}

/// uid 65534 in the read-write group.
const GROUP_MEMBER: &str = "--reuid=65534 --regid=65534 --groups=4242";

fn logged(d: &Daemon, log: &str) -> Vec<u8> {
    std::fs::read(d.log(log)).unwrap_or_default()
}

/// The done-when of the issue: `logdctl attach` as a user in the read-write group can take the
/// lock (from root, who held it) and type; a user in the read-only list cannot, and is told
/// why; a user in neither list is refused, counted. The console socket is open to all (0666)
/// but serves nothing else.
#[test]
fn attach_as_a_read_write_group_member_takes_the_lock_and_others_cannot() {
    let Some((d, img)) = setup() else { return };
    let rw = format!("@{RW_GROUP}");
    let ro = READER.to_string();
    let _q = console(&d, &img, "grp", &["--read-write", &rw, "--read-only", &ro]);
    let console_socket = d.socket.with_file_name("logd-console.sock");
    let mode = std::fs::metadata(&console_socket)
        .expect("the console socket beside the main one")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o666, "any local user must reach the console socket");

    // Root attaches first and holds the lock.
    let (root, _root_rec) =
        Terminal::run_recorded("att-root", d.dir.path(), &attach_cmd(&d, None, ""));
    root.wait_for("you may type", T);

    // The group member: read-write, waiting; forcing takes the lock; its keys reach the guest.
    let (member, _m) = Terminal::run_recorded(
        "att-member",
        d.dir.path(),
        &attach_cmd(&d, Some(GROUP_MEMBER), ""),
    );
    member.wait_for("read-write, waiting for the lock", T);
    assert!(
        member.screen().contains("65534:nobody"),
        "{}",
        member.screen()
    );
    member.keys(&["C-]"]);
    member.wait_for("command?", T);
    member.keys(&["f"]);
    member.wait_for("you hold the write lock", T);
    root.wait_for("took the write lock from you", T);
    member.keys(&["-l", "from the group"]);
    member.wait_for("FROM THE GROUP", T);
    wait_logged(&d, "grp.log", b"FROM THE GROUP");

    // The reader: read-only; forcing is refused with the reason; its keys are discarded.
    let (reader, _r) = Terminal::run_recorded(
        "att-reader",
        d.dir.path(),
        &attach_cmd(
            &d,
            Some(&format!("--reuid={READER} --regid={READER} --clear-groups")),
            "",
        ),
    );
    reader.wait_for("read-only; ^]", T);
    reader.keys(&["C-]"]);
    reader.wait_for("command?", T);
    reader.keys(&["f"]);
    reader.wait_for("you may not type on console serial0", T);
    reader.keys(&["-l", "from the reader"]);
    reader.wait_for("your input is discarded", T);
    // The member types after it: the reader's keys, sent first, would be in the log before.
    member.keys(&["-l", "after"]);
    wait_logged(&d, "grp.log", b"AFTER");
    assert!(
        !contains(&logged(&d, "grp.log"), b"FROM THE READER"),
        "a read-only user's keys reached the guest"
    );

    // `ps --json`: who is there, and who holds the lock.
    let v: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let subs = v["domains"][0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"]["console"]["name"] == "serial0")
        .unwrap()["subscribers"]
        .clone();
    let writers: Vec<_> = subs
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["writer"] == true)
        .map(|s| s["peer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(writers, ["65534:nobody"], "{subs}");
    assert_eq!(subs.as_array().unwrap().len(), 3, "{subs}");

    // A user in neither list: refused, with the reason, and counted.
    let out = run_bounded(
        past_file_modes_as(65532, LOGDCTL)
            .arg("--socket")
            .arg(&d.socket)
            .args(["attach", "--domain", "vm", "--name", "serial0"]),
        T,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uid 65532 may not use console serial0"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let snap = v["domains"][0]["streams"][0].clone();
    assert_eq!(snap["refused"], 1, "{snap}");

    // The console socket serves attaches only: even root cannot list consoles through it.
    let out = run_bounded(
        Command::new(LOGDCTL)
            .arg("--socket")
            .arg(&console_socket)
            .args(["console", "list"]),
        T,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not served on the console socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The escape menu in a real terminal: help, who, spy (keys discarded), lock again (keys reach
/// the guest), replay, BREAK and SysRq (told they cannot be carried), the escape typed twice,
/// and detach, the terminal restored. Then conserver's `^Ec` as the escape.
#[test]
fn the_escape_menu_commands_work_in_a_terminal() {
    let Some((d, img)) = setup() else { return };
    let _q = console(&d, &img, "menu", &[]);
    let (term, rec) = Terminal::run_recorded("att-menu", d.dir.path(), &attach_cmd(&d, None, ""));
    term.wait_for("you may type", T);
    let menu = |key: &[&str], want: &str| {
        term.keys(&["C-]"]);
        term.wait_for("command?", T);
        term.keys(key);
        term.wait_for(want, T);
    };
    menu(&["?"], "who is attached");
    term.keys(&["C-l"]);
    menu(&["w"], "attached (in write-lock order)");
    assert!(term.screen().contains("0:root"), "{}", term.screen());
    menu(&["s"], "you are watching read-only now");
    term.keys(&["-l", "spied"]);
    menu(&["l"], "you hold the write lock");
    term.keys(&["-l", "typed again"]);
    term.wait_for("TYPED AGAIN", T);
    wait_logged(&d, "menu.log", b"TYPED AGAIN");
    assert!(
        !contains(&logged(&d, "menu.log"), b"SPIED"),
        "a spy's keys reached the guest"
    );
    menu(&["r"], "replay how many lines?");
    term.keys(&["-l", "1"]);
    term.keys(&["Enter"]);
    term.wait_for("end of replay", T);
    menu(&["b"], "BREAK cannot reach this guest");
    menu(&["k"], "SysRq key?");
    term.keys(&["-l", "t"]);
    term.wait_for("SysRq 't' cannot reach this guest", T);
    menu(&["x"], "no command");
    menu(&["."], "detached");
    let (status, restored) = rec.wait(T);
    assert_eq!(status, "exit=0");
    assert!(restored, "the terminal was not restored after detaching");

    // conserver's escape: Ctrl-E c, then the command.
    let (term, rec) = Terminal::run_recorded(
        "att-menu-e",
        d.dir.path(),
        &attach_cmd(&d, None, "--escape ^Ec"),
    );
    term.wait_for("^Ec then ? for help", T);
    // Ctrl-E alone, then a key that is not `c`: both are typed into the guest.
    term.keys(&["C-e", "-l", "zq9"]);
    wait_logged(&d, "menu.log", b"ZQ9");
    term.keys(&["C-e", "c", "."]);
    let (status, _) = rec.wait(T);
    assert_eq!(status, "exit=0");
}

/// `attach --read-only` watches even as root, and `attach --force` takes the lock from its
/// holder, who is told by whom. An attached subscriber, its owner and its role survive a
/// re-exec: its keys and its commands still work after.
#[test]
fn attach_read_only_force_and_a_reexec() {
    let Some((d, img)) = setup() else { return };
    let _q = console(&d, &img, "force", &[]);
    let (first, _f) = Terminal::run_recorded("att-first", d.dir.path(), &attach_cmd(&d, None, ""));
    first.wait_for("you may type", T);
    let (spy, _s) = Terminal::run_recorded(
        "att-spy",
        d.dir.path(),
        &attach_cmd(&d, None, "--read-only"),
    );
    spy.wait_for("read-only; ^]", T);
    let (forcer, _fo) = Terminal::run_recorded(
        "att-forcer",
        d.dir.path(),
        &attach_cmd(&d, Some(GROUP_MEMBER), "--force"),
    );
    // uid 65534 is in no list of this console: refused, --force or not.
    forcer.wait_for("may not use console serial0", T);
    let (forcer, _fo) = Terminal::run_recorded(
        "att-forcer-root",
        d.dir.path(),
        &attach_cmd(&d, None, "--force"),
    );
    forcer.wait_for("you may type", T);
    first.wait_for("took the write lock from you", T);
    spy.keys(&["-l", "from the spy"]);
    forcer.keys(&["-l", "from the forcer"]);
    wait_logged(&d, "force.log", b"FROM THE FORCER");
    assert!(!contains(&logged(&d, "force.log"), b"FROM THE SPY"));

    d.ctl_ok(&["reexec"]);
    forcer.keys(&["-l", "after the reexec"]);
    wait_logged(&d, "force.log", b"AFTER THE REEXEC");
    // Its owner came across: its commands are still its own.
    forcer.keys(&["C-]"]);
    forcer.wait_for("command?", T);
    forcer.keys(&["w"]);
    forcer.wait_for("attached (in write-lock order)", T);
    let screen = forcer.screen();
    assert!(screen.matches("0:root").count() >= 3, "{screen}");
}
