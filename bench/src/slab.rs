//! The kernel's side of an idle domain: the slab caches of `/proc/slabinfo`
//! ([`kernel_slab_bytes`], [`KernelMemory`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use anyhow::{ensure, Context, Result};
use logd_kit::kib_field;

use crate::{KIB, MIB};

/// The bytes the kernel's slab caches hold: the sum over `/proc/slabinfo` (format 2.1, readable
/// by root only) of `active_objs * objsize` for every cache.
///
/// This is where an idle domain's kernel memory is: its pipe (`pipe_inode_info` and the array of
/// 16 `pipe_buffer`s are plain kmallocs: `kmalloc-cg-192` and `kmalloc-cg-1k` here), the pipe's
/// inode (`inode_cache`), dentry and two `filp`s, the log file's inode (`ext4_inode_cache`),
/// dentry and `filp`, an LSM blob per inode and per file, and a daemon's epoll items
/// (`eventpoll_epi`, `eventpoll_pwq`). Merged caches show under one name (this kernel has no
/// /sys/kernel/slab to tell them apart). With SLUB, `active_objs` counts the free objects of the
/// per-CPU slabs as active, so a reading is good to a few slabs, far below 10,000 domains.
///
/// The figure the scenarios print ([`KernelMemory::per_domain_kib`]) takes two things out,
/// both of which another process's work moves and no idle domain does:
/// - The proc inodes, dentries and LSM blobs that lookups in `/proc/PID/fd` leave cached
///   ([`KernelMemory::proc_lookup_bytes`]). A process of this sandbox (not the bench, not a
///   daemon) walks every process's `/proc/PID/fd` every few seconds, which caches about 0.9 KiB
///   per fd: up to 2.6 KiB per domain counting the bench's write end, depending on how far it
///   got. A domain never makes a proc inode, so every proc inode that appears comes from such a
///   lookup and is taken out together with its dentry and blob.
/// - The page cache's bookkeeping, `buffer_head` and `radix_tree_node` ([`PAGE_CACHE_SLABS`]):
///   page cache is not counted (an idle log is empty; the log directory's few blocks are shared
///   by every domain: some 80 buffer heads for 10,000 names), but writeback and reclaim of other
///   files free buffer heads during the opens: -0.2 to -0.3 KiB per domain in virtlogd's 22 s
///   of opens here.
///
/// Left out: `KernelStack` and `PageTables` from /proc/meminfo. No thread is started per domain,
/// and the page tables follow the daemon's RSS growth (a few MiB over 10,000 domains: some
/// tens of KiB of page tables, under 0.01 KiB per domain). What moves them during a run is other
/// processes starting and ending (±2 MiB in all with a build running alongside, ±0.2 KiB per
/// domain): adding them would add that noise and no information. [`KernelMemory::describe_delta`]
/// prints both with every reading so that this stays checked. Also left out: allocations too
/// large for a slab cache (the fd tables, which grow by doubling, in both processes: about 8
/// bytes per fd).
pub(crate) fn kernel_slab_bytes() -> Result<u64> {
    Ok(slab_caches()?.values().map(SlabCache::bytes).sum())
}

/// One cache of `/proc/slabinfo`.
#[derive(Clone, Copy, Default)]
struct SlabCache {
    active_objs: u64,
    objsize: u64,
}

impl SlabCache {
    fn bytes(&self) -> u64 {
        self.active_objs * self.objsize
    }
}

/// The caches of `/proc/slabinfo`, by name.
fn slab_caches() -> Result<BTreeMap<String, SlabCache>> {
    let path = "/proc/slabinfo";
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading {path} (it is readable by root only)"))?;
    parse_slabinfo(&text).with_context(|| format!("unexpected format of {path}"))
}

/// The caches of a `/proc/slabinfo` text: `name active_objs num_objs objsize …` after two
/// header lines, the first of which names version 2.1.
fn parse_slabinfo(text: &str) -> Result<BTreeMap<String, SlabCache>> {
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default();
    ensure!(
        version.trim() == "slabinfo - version: 2.1",
        "first line {version:?}, expected version 2.1"
    );
    let mut caches = BTreeMap::new();
    for line in lines.filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("field {} of {line:?}", i + 1))
        };
        let cache = SlabCache {
            active_objs: number(1)?,
            objsize: number(3)?,
        };
        caches.insert(fields[0].to_owned(), cache);
    }
    ensure!(!caches.is_empty(), "no cache listed");
    Ok(caches)
}

/// What the kernel holds, read before and after opening idle domains: the slab total and its
/// caches, and the two /proc/meminfo lines [`kernel_slab_bytes`] leaves out.
pub(crate) struct KernelMemory {
    slab_bytes: u64,
    caches: BTreeMap<String, SlabCache>,
    kernel_stack_kib: u64,
    page_tables_kib: u64,
}

impl KernelMemory {
    /// [`read`](Self::read) after asking the kernel to free what it can of its slab caches:
    /// `sync`, then `vm.drop_caches = 2`, which frees every dentry and inode nothing holds (and
    /// what they hold), machine-wide. What is left is what the kernel cannot give back under
    /// memory pressure: an open file's inode, dentry and `filp`, a pipe, an epoll item. A file
    /// that is closed again leaves its inode and dentry cached, like its pages in the page
    /// cache (which no figure counts), and this reading does not count them either. Needs
    /// root, as /proc/slabinfo does.
    ///
    /// The kernel frees what it reclaims after an RCU grace period (inodes and dentries go
    /// through `call_rcu`), so a reading taken at once still counts most of it: the reclaim is
    /// asked for twice, each time followed by [`RECLAIM_SETTLE`].
    pub(crate) fn read_pinned() -> Result<KernelMemory> {
        let knob = "/proc/sys/vm/drop_caches";
        for _ in 0..2 {
            nix::unistd::sync();
            fs::write(knob, "2\n").with_context(|| format!("writing 2 to {knob} (root only)"))?;
            std::thread::sleep(RECLAIM_SETTLE);
        }
        Self::read()
    }

    /// The slab caches are read twice (total, then by cache), a moment apart.
    pub(crate) fn read() -> Result<KernelMemory> {
        let slab_bytes = kernel_slab_bytes()?;
        let caches = slab_caches()?;
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let kib = |key: &str| {
            kib_field(&meminfo, key).with_context(|| format!("no {key} in /proc/meminfo"))
        };
        Ok(KernelMemory {
            slab_bytes,
            caches,
            kernel_stack_kib: kib("KernelStack:")?,
            page_tables_kib: kib("PageTables:")?,
        })
    }

    fn cache(&self, name: &str) -> SlabCache {
        self.caches.get(name).copied().unwrap_or_default()
    }

    /// The bytes that lookups in `/proc/PID/fd` left cached since `before`: per new proc inode,
    /// the inode, its dentry and (where an LSM keeps a blob per inode) that blob.
    fn proc_lookup_bytes(&self, before: &KernelMemory) -> i64 {
        let inodes = self.cache("proc_inode_cache").active_objs as i64
            - before.cache("proc_inode_cache").active_objs as i64;
        let each = ["proc_inode_cache", "dentry", "lsm_inode_cache"]
            .map(|name| self.cache(name).objsize)
            .iter()
            .sum::<u64>();
        inodes * each as i64
    }

    /// How much the page cache's bookkeeping ([`PAGE_CACHE_SLABS`]) moved since `before`.
    fn page_cache_bytes(&self, before: &KernelMemory) -> i64 {
        PAGE_CACHE_SLABS
            .iter()
            .map(|name| self.cache(name).bytes() as i64 - before.cache(name).bytes() as i64)
            .sum()
    }

    /// The slab that `n` domains opened since `before` cost, per domain, in KiB: the slab's
    /// growth less what /proc lookups left ([`KernelMemory::proc_lookup_bytes`]) and less the
    /// page cache's bookkeeping ([`KernelMemory::page_cache_bytes`]).
    pub(crate) fn per_domain_kib(&self, before: &KernelMemory, n: usize) -> f64 {
        let grown = self.slab_bytes as i64 - before.slab_bytes as i64;
        let others = self.proc_lookup_bytes(before) + self.page_cache_bytes(before);
        (grown - others) as f64 / KIB as f64 / n as f64
    }

    /// The slab's growth per domain before and after taking out the /proc lookups and the page
    /// cache's bookkeeping, the
    /// [`TOP_SLAB_CACHES`] caches that moved most (in bytes per domain), and the meminfo lines
    /// left out of the figure.
    pub(crate) fn describe_delta(&self, before: &KernelMemory, n: usize) -> String {
        let mut moved: Vec<(&str, f64)> = self
            .caches
            .keys()
            .chain(before.caches.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|name| {
                let delta = self.cache(name).bytes() as f64 - before.cache(name).bytes() as f64;
                (name.as_str(), delta / n as f64)
            })
            .collect();
        moved.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let top: Vec<String> = moved
            .iter()
            .take(TOP_SLAB_CACHES)
            .map(|(name, bytes)| format!("{name} {bytes:+.0}"))
            .collect();
        let grown = self.slab_bytes as f64 - before.slab_bytes as f64;
        let proc_inodes = self.cache("proc_inode_cache").active_objs as i64
            - before.cache("proc_inode_cache").active_objs as i64;
        let kib_each = |bytes: i64| bytes as f64 / KIB as f64 / n as f64;
        format!(
            "slab {:.1} -> {:.1} MiB = {:.3} KiB per domain, less {proc_inodes} proc inodes \
             left by /proc/PID/fd lookups with their dentries and LSM blobs ({:.3} KiB per \
             domain) and less the page cache's bookkeeping ({}: {:.3} KiB per domain) = {:.3} \
             KiB per domain; the caches that moved most, in bytes per domain: {}; left out: \
             KernelStack {:+} KiB, PageTables {:+} KiB in all",
            before.slab_bytes as f64 / MIB as f64,
            self.slab_bytes as f64 / MIB as f64,
            grown / KIB as f64 / n as f64,
            kib_each(self.proc_lookup_bytes(before)),
            PAGE_CACHE_SLABS.join(", "),
            kib_each(self.page_cache_bytes(before)),
            self.per_domain_kib(before, n),
            top.join(", "),
            self.kernel_stack_kib as i64 - before.kernel_stack_kib as i64,
            self.page_tables_kib as i64 - before.page_tables_kib as i64,
        )
    }
}

/// How long [`KernelMemory::read_pinned`] lets the kernel finish freeing what it reclaimed
/// (its RCU callbacks): measured here, a second is enough for 10,000 inodes and dentries, and
/// a reading at once still counted most of them.
const RECLAIM_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The slab caches that keep track of page cache, which the kernel figure does not count.
const PAGE_CACHE_SLABS: [&str; 2] = ["buffer_head", "radix_tree_node"];

/// How many slab caches a kernel-memory note names.
const TOP_SLAB_CACHES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    const SLABINFO: &str = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
proc_inode_cache    1000   1100    696   23    4 : tunables    0    0    0 : slabdata     48     48      0
dentry            200000 201000    192   21    1 : tunables    0    0    0 : slabdata   9571   9571      0
lsm_inode_cache     5000   5100     32  128    1 : tunables    0    0    0 : slabdata     40     40      0
filp                3000   3100    192   21    1 : tunables    0    0    0 : slabdata    148    148      0
buffer_head       100000 100100    104   39    1 : tunables    0    0    0 : slabdata   2567   2567      0
";

    fn kernel(text: &str) -> KernelMemory {
        let caches = parse_slabinfo(text).unwrap();
        KernelMemory {
            slab_bytes: caches.values().map(SlabCache::bytes).sum(),
            caches,
            kernel_stack_kib: 0,
            page_tables_kib: 0,
        }
    }

    #[test]
    fn slabinfo_gives_each_caches_active_objects_and_size() {
        let caches = parse_slabinfo(SLABINFO).unwrap();
        assert_eq!(caches.len(), 5);
        assert_eq!(caches["filp"].active_objs, 3000);
        assert_eq!(caches["filp"].objsize, 192);
        assert_eq!(caches["proc_inode_cache"].bytes(), 696_000);
        assert!(parse_slabinfo("slabinfo - version: 1.1\n").is_err());
        assert!(parse_slabinfo("slabinfo - version: 2.1\n# name\nfilp x 1 192\n").is_err());
    }

    #[test]
    fn what_proc_lookups_leave_and_page_cache_bookkeeping_are_not_a_domains_cost() {
        let before = kernel(SLABINFO);
        // 10 domains, 3 filps each; 30 proc inodes, each with a dentry and an LSM blob; 500
        // buffer heads freed.
        let after = kernel(
            &SLABINFO
                .replace("proc_inode_cache    1000", "proc_inode_cache    1030")
                .replace("dentry            200000", "dentry            200030")
                .replace("lsm_inode_cache     5000", "lsm_inode_cache     5030")
                .replace("filp                3000", "filp                3030")
                .replace("buffer_head       100000", "buffer_head        99500"),
        );
        assert_eq!(after.proc_lookup_bytes(&before), 30 * (696 + 192 + 32));
        assert_eq!(after.page_cache_bytes(&before), -500 * 104);
        let per_domain = after.per_domain_kib(&before, 10);
        assert!(
            (per_domain - 3.0 * 192.0 / 1024.0).abs() < 1e-9,
            "{per_domain}"
        );
        let note = after.describe_delta(&before, 10);
        assert!(note.contains("less 30 proc inodes"), "{note}");
        assert!(note.contains("proc_inode_cache +2088"), "{note}");
    }
}
