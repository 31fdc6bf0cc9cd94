//! logd: a daemon that owns the stdio and console streams of virtual machines and caps their logs.
//!
//! The modules map the design (docs/ARCHITECTURE.md tells the whole story):
//! - [`daemon`]: start-up, threads, signals and shutdown;
//! - [`server`]: the main socket, its clients and their requests;
//! - [`virtlogd`]: the virtlogd socket, libvirt's RPC served from the same requests;
//! - [`reexec`]: handing everything to a new process (SIGUSR1, `logdctl reexec`);
//! - [`registry`]: the actor holding the table of domains and open paths;
//! - [`table`]: the registry's compact map (a slab of entries and a hash index of their ids);
//! - [`domain`]: the actor of one guest, owning its log streams;
//! - [`console`]: a guest's serial chardev fanned out to its log and its subscribers;
//! - [`subscriber`]: one TCP or UNIX connection watching a console;
//! - [`telnet`]: the sans-IO telnet codec for console subscribers in telnet mode;
//! - [`stream`]: one pipe feeding one log sink, the hot byte path;
//! - [`sink`]: a rotating file that survives disk errors and never blocks its caller;
//! - [`disk`]: the writer threads, one per file system, that do every write of a log;
//! - [`budget`]: how a busy stream gives its worker's other streams their turn;
//! - [`pipe`]: pipe creation and adaptive capacity;
//! - [`poller`]: one epoll per worker thread telling the pumps which pipes have data;
//! - [`rotate`]: the size-capped rotating file and reads across its backups;
//! - [`paths`]: which log paths a client may name;
//! - [`logdir`]: a log's directory, held open, where its rotation works by name;
//! - [`sockdir`]: the directories of the sockets, trusted only when closed to other users;
//! - [`config`]: defaults, the TOML file and overrides;
//! - [`events`]: the bounded event bus behind `logdctl events`;
//! - [`fanin`]: one answer from each of many actors, with a single wake-up;
//! - [`identity`]: which binary is serving, and its line of re-execs;
//! - [`metrics`]: the optional Prometheus endpoint;
//! - [`logging`]: the daemon's own tracing, with a filter changeable at run time;
//! - [`state`]: what one process hands the next at a re-exec, in a versioned format;
//! - [`systemd`]: readiness notification and socket activation;
//! - [`cli`]: what the binaries share in reporting to a person.
#![deny(unsafe_code)]

pub mod budget;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod disk;
pub mod domain;
pub mod events;
pub mod fanin;
pub mod identity;
pub mod logdir;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod pipe;
pub mod poller;
pub mod reexec;
pub mod registry;
pub mod rotate;
pub mod server;
pub mod sink;
pub mod sockdir;
pub mod state;
pub mod stream;
pub mod subscriber;
pub mod systemd;
pub mod table;
pub mod telnet;
pub mod virtlogd;
