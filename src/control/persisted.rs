//! The consoles added with `logdctl console add --persist`: the set this daemon holds, always
//! what its persisted consoles file says ([`crate::host::persisted`] reads and writes it).
//!
//! - The connections' `AddConsolePersistent` and `RemoveConsole` change it ([`Persisted::add`],
//!   [`Persisted::remove`]) and wait for the file to be written before they answer, so a caller
//!   told OK knows the console is on disk, and a caller told why the file could not be written
//!   knows the console is not added (or not removed).
//! - [`crate::control::declared`] creates its consoles at start, after a re-exec's take-over and
//!   at SIGHUP (those not running), after the config file's, which wins a console both name.
//!
//! The file is written on the blocking pool, never on an actor's thread: neither a guest's bytes
//! nor the registry wait for the disk. One async lock orders the changes, each written whole
//! while it is held, so two requests' writes never cross; only control requests wait for it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use actix::Addr;
use logd_protocol::{ConsoleSpec, DomainId, ErrorCode, GuestSide, Position, WireError};
use tokio::sync::{Mutex, MutexGuard};

use crate::console::{ConsoleConfig, ConsoleRequest, GuestPlan};
use crate::control::registry::{self, Registry};
use crate::host::consoles::{key_of, Key, MAX_DECLARED};
use crate::host::persisted::{self as file, PersistError};
use crate::serve::checks::{check_domain, console_config};

/// The persisted consoles, and their file.
#[derive(Debug)]
pub(crate) struct Persisted {
    /// None: this user has no default and none was configured; `--persist` is refused.
    path: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// In file order: the order they were added in.
    specs: Vec<ConsoleRequest>,
    /// The file on disk did not read: it is set aside (`PATH.bad`) before the next write
    /// replaces it, so what was in it is not lost.
    broken: bool,
}

/// What a persisted add answers: the bound TCP address, the log's end, the UNIX socket.
pub(crate) type Added = (Option<String>, Position, Option<String>);

impl Persisted {
    /// Reads the file (at start and at a re-exec's take-over, before serving). A file that
    /// does not read, or a table of it, is logged at `error` naming the file, and logd goes
    /// on without it.
    pub(crate) fn load(path: Option<PathBuf>, roots: &[&Path]) -> Persisted {
        let mut state = State::default();
        match &path {
            None => tracing::warn!(
                "no persisted consoles file (no home directory, and no consoles_file in the \
                 config): `logdctl console add --persist` is refused"
            ),
            Some(p) => {
                if let Some(root) = roots.iter().find(|r| p.starts_with(r)) {
                    tracing::warn!(
                        file = %p.display(),
                        root = %root.display(),
                        "the persisted consoles file lies under a directory logs may be opened in: \
                         a log opened at its path would overwrite it"
                    );
                }
                match file::load(p) {
                    Ok(loaded) => {
                        for e in &loaded.refused {
                            tracing::error!(
                                file = %p.display(),
                                "persisted console left out: {e}"
                            );
                        }
                        state.specs = loaded.specs;
                    }
                    Err(e) => {
                        tracing::error!(
                            "{e}; logd goes on without the consoles it persisted (the file is \
                             kept, and moved to {}.bad when a console is next persisted)",
                            p.display()
                        );
                        state.broken = true;
                    }
                }
            }
        }
        Persisted {
            path,
            state: Mutex::new(state),
        }
    }

    /// The set, held: nothing changes it until the guard is dropped.
    pub(crate) async fn hold(&self) -> Held<'_> {
        Held {
            persisted: self,
            state: self.state.lock().await,
        }
    }

    /// `AddConsolePersistent`: adds the console as `AddConsole` does, then writes it to the
    /// file. If the file cannot be written, the console is removed again and the caller is
    /// told why, naming the file.
    ///
    /// The entry written is the console as created: its paths resolved (absolute), its TCP
    /// address as bound (port 0 becomes the port it got, so it comes back on the same one),
    /// and never `truncate` (a restart appends to its log).
    pub(crate) async fn add(
        &self,
        registry: &Addr<Registry>,
        req: ConsoleRequest,
    ) -> Result<Added, WireError> {
        let spec = &req.spec;
        let Some(path) = &self.path else {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "this logd has no persisted consoles file (it found no home directory): set \
                 consoles_file in its config file",
            ));
        };
        if spec.guest == GuestSide::Fd {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "a console with --guest-fd cannot be persisted: at the next start nobody would \
                 take the guest's end; use --guest-listen or --guest-connect",
            ));
        }
        check_domain(&spec.domain)?;
        let config = console_config(req.clone()).await?;
        let mut entry = entry_for(&req, &config)?;
        let label = format!("{}/{}", spec.domain.name, spec.name);
        let key = key_of(&spec.domain, &spec.name);
        let mut st = self.state.lock().await;
        // A persisted console that is not running (it could not be created at start) is
        // replaced by this one.
        let mut specs: Vec<ConsoleRequest> = st
            .specs
            .iter()
            .filter(|s| key_of(&s.spec.domain, &s.spec.name) != key)
            .cloned()
            .collect();
        if specs.len() >= MAX_DECLARED {
            return Err(WireError::new(
                ErrorCode::Busy,
                format!(
                    "at most {MAX_DECLARED} consoles may be persisted (in {}): remove one first",
                    path.display()
                ),
            ));
        }
        let unix = config.unix.as_ref().map(|p| p.display().to_string());
        let (tcp, position, _) = registry::call(
            registry,
            registry::AddConsole {
                config,
                kept: Default::default(),
            },
        )
        .await
        .map_err(|_| stopped())?
        .map_err(|e| e.to_wire())?;
        entry.spec.tcp = tcp.clone();
        specs.push(entry);
        if let Err(e) = self.write(st.broken, specs.clone()).await {
            tracing::error!(console = %label, cause = %e, "console not persisted, so not added");
            if let Err(r) = remove_running(registry, &spec.domain, &spec.name).await {
                tracing::error!(
                    console = %label,
                    cause = %r.message,
                    "a console that could not be persisted could not be removed again"
                );
            }
            return Err(WireError::new(
                ErrorCode::Io,
                format!("console {label} not added: {e}"),
            ));
        }
        st.specs = specs;
        st.broken = false;
        tracing::info!(console = %label, tcp = ?tcp, file = %path.display(), "console added and persisted");
        Ok((tcp, position, unix))
    }

    /// `RemoveConsole`: a persisted console leaves the file first (so it does not come back at
    /// the next start), then stops running. One that is persisted but not running (it could not
    /// be created) is removed from the file and that is all. Any other console is removed as
    /// before.
    pub(crate) async fn remove(
        &self,
        registry: &Addr<Registry>,
        domain: DomainId,
        name: String,
    ) -> Result<(), WireError> {
        check_domain(&domain)?;
        let key = key_of(&domain, &name);
        let mut st = self.state.lock().await;
        let Some(i) = st
            .specs
            .iter()
            .position(|s| key_of(&s.spec.domain, &s.spec.name) == key)
        else {
            drop(st);
            return remove_running(registry, &domain, &name).await;
        };
        let label = format!("{}/{}", domain.name, name);
        let mut specs = st.specs.clone();
        specs.remove(i);
        if let Err(e) = self.write(st.broken, specs.clone()).await {
            tracing::error!(console = %label, cause = %e, "persisted console not removed");
            return Err(WireError::new(
                ErrorCode::Io,
                format!("console {label} not removed (it would come back at the next start): {e}"),
            ));
        }
        st.specs = specs;
        st.broken = false;
        match remove_running(registry, &domain, &name).await {
            Ok(()) => {
                tracing::info!(console = %label, "persisted console removed, and from its file");
                Ok(())
            }
            Err(e) if e.code == ErrorCode::NotFound => {
                tracing::info!(console = %label, "persisted console (not running) removed from its file");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `specs` as the whole file, on the blocking pool, and waits for it.
    async fn write(&self, broken: bool, specs: Vec<ConsoleRequest>) -> Result<(), PersistError> {
        let path = self
            .path
            .clone()
            .expect("only a daemon with a persisted consoles file persists");
        let at = path.clone();
        tokio::task::spawn_blocking(move || {
            if broken {
                let bad = file::set_aside(&path)?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %bad.display(),
                    "the persisted consoles file that did not read is set aside"
                );
            }
            file::store(&path, &specs)
        })
        .await
        .unwrap_or_else(|_| {
            Err(PersistError::Write {
                path: at,
                source: std::io::Error::other("the writing thread panicked"),
            })
        })
    }
}

/// The persisted set, held by [`crate::control::declared`] while it applies it.
pub(crate) struct Held<'a> {
    persisted: &'a Persisted,
    state: MutexGuard<'a, State>,
}

impl Held<'_> {
    pub(crate) fn specs(&self) -> &[ConsoleRequest] {
        &self.state.specs
    }

    pub(crate) fn keys(&self) -> HashSet<Key> {
        self.state
            .specs
            .iter()
            .map(|s| key_of(&s.spec.domain, &s.spec.name))
            .collect()
    }

    /// The config file wins: the persisted consoles it also names leave the set and the file
    /// (each logged). If the file cannot be written they stay in both, left out until the next
    /// time; the config file's console is used either way.
    pub(crate) async fn give_way_to(&mut self, declared: &HashSet<Key>, when: &str) {
        let (shadowed, rest): (Vec<ConsoleRequest>, Vec<ConsoleRequest>) = self
            .state
            .specs
            .iter()
            .cloned()
            .partition(|s| declared.contains(&key_of(&s.spec.domain, &s.spec.name)));
        if shadowed.is_empty() {
            return;
        }
        let file = self.path_text();
        for s in &shadowed {
            tracing::warn!(
                console = %format!("{}/{}", s.spec.domain.name, s.spec.name),
                file = %file,
                "{when}: the console is both in the config file and persisted: the config file's is used, and it leaves the persisted consoles file"
            );
        }
        match self.persisted.write(self.state.broken, rest.clone()).await {
            Ok(()) => {
                self.state.specs = rest;
                self.state.broken = false;
            }
            Err(e) => {
                tracing::error!(cause = %e, "{when}: the persisted consoles the config file names stay in their file");
                // Not created from it meanwhile: the config file's are.
                self.state
                    .specs
                    .retain(|s| !declared.contains(&key_of(&s.spec.domain, &s.spec.name)));
            }
        }
    }

    pub(crate) fn path_text(&self) -> String {
        self.persisted
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// The entry to persist for a console created from `req` as `c`: paths absolute, no
/// `truncate`, the access lists as written (names are resolved again at each start); the TCP
/// address is set once bound.
fn entry_for(req: &ConsoleRequest, c: &ConsoleConfig) -> Result<ConsoleRequest, WireError> {
    let spec = &req.spec;
    let text = |p: &Path| {
        p.to_str().map(str::to_owned).ok_or_else(|| {
            WireError::new(
                ErrorCode::InvalidArgument,
                format!("path {} is not UTF-8: it cannot be persisted", p.display()),
            )
        })
    };
    let spec = ConsoleSpec {
        domain: spec.domain.clone(),
        name: spec.name.clone(),
        guest: match &c.guest {
            GuestPlan::Listen(p) => GuestSide::Listen { path: text(p)? },
            GuestPlan::Connect(p) => GuestSide::Connect { path: text(p)? },
            GuestPlan::Fd => GuestSide::Fd,
        },
        log: text(&c.log)?,
        truncate: false,
        tcp: None,
        unix: c.unix.as_deref().map(text).transpose()?,
        protocol: spec.protocol,
        write: spec.write,
        replay: spec.replay,
        max_subscribers: spec.max_subscribers,
        queue_limit: spec.queue_limit,
    };
    let tls = match (&req.tls, &c.tls) {
        // The address as checked (never port 0), the directory absolute.
        (Some(r), Some(t)) => Some(crate::console::tls::TlsRequest {
            addr: t.settings.addr.clone(),
            dir: text(&t.settings.dir)?,
            ..r.clone()
        }),
        _ => None,
    };
    Ok(ConsoleRequest {
        spec,
        access: req.access.clone(),
        notices: req.notices,
        tls,
    })
}

/// Removes a running console as `logdctl console remove` does (its log stays).
pub(crate) async fn remove_running(
    registry: &Addr<Registry>,
    domain: &DomainId,
    name: &str,
) -> Result<(), WireError> {
    let msg = registry::RemoveConsole {
        domain: domain.clone(),
        name: name.to_owned(),
    };
    registry::call(registry, msg)
        .await
        .map_err(|_| stopped())?
        .map_err(|e| e.to_wire())
}

fn stopped() -> WireError {
    WireError::new(ErrorCode::Internal, "the registry stopped")
}
