//! The data path: a guest's bytes from its pipe to its log's files, in the order they travel
//! (docs/ARCHITECTURE.md, "The byte path"):
//! - [`pipe`]: pipe creation and adaptive capacity;
//! - [`poller`]: one epoll per worker thread telling the pumps which pipes have data;
//! - [`budget`]: how a busy stream gives its worker's other streams their turn;
//! - [`stream`]: one pipe feeding one log sink;
//! - [`sink`]: a log's batches on their way to its file, bounded, never blocking its caller;
//! - [`disk`]: the writer threads of each file system, which do every file-system call of a log;
//! - [`rotate`]: the size-capped rotating file and reads across its backups;
//! - [`logdir`]: a log's directory, held open, where its rotation works by name;
//! - [`tally`]: each stored log's counters in a shared mapping that outlives a crash.

pub mod budget;
pub mod disk;
pub mod logdir;
pub mod pipe;
pub mod poller;
pub mod rotate;
pub mod sink;
pub mod stream;
pub(crate) mod tally;
