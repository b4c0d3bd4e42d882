//! CPU seconds (user + system) the stage's processes spent, read from
//! `/proc`: each app instance, the private Redis (or a private Redis
//! Cluster's nodes, summed), the private Postgres (the postmaster, its live
//! backends, and those it has reaped), and the harness itself (`getrusage`).
//!
//! Figures are cumulative and survive restarts: a component's CPU is what
//! its earlier processes had spent when last read plus its current
//! process's, so it never goes backwards. What a process spends between its
//! last reading and its end (at most one sampling period) is not seen. A
//! server the harness does not run (`REDIS_URL`, `DATABASE_URL`, a
//! container) has no figure, and says why: its processes are not ours to
//! read, and may serve others. An existing cluster (`REDIS_CLUSTER_URLS`)
//! is not metered at all: the run has no Redis component, shown as `-`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::model::cpu::{CpuSample, POSTGRES, REDIS};
use crate::stage::process::PidWatch;
use crate::stage::services::Server;
use crate::stage::services::redis_cluster::RedisCluster;
use crate::stage::stack::Stack;

/// One process's CPU figures from `/proc/PID/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// When it started, in ticks since boot: with the pid, which process
    /// this is (pids are reused).
    pub start_time: u64,
    /// Its own CPU: utime + stime.
    pub own: u64,
    /// What its children had spent when it reaped them: cutime + cstime.
    pub reaped: u64,
}

impl ProcStat {
    /// Parses a `/proc/PID/stat` line. The command name is in parentheses
    /// and may hold spaces or parentheses, so fields count from the last `)`.
    pub fn parse(pid: u32, line: &str) -> Option<Self> {
        let (_, rest) = line.rsplit_once(") ")?;
        // After the name: state (field 3), ppid (4), ..., utime (14),
        // stime (15), cutime (16), cstime (17), ..., starttime (22).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        // cutime and cstime are signed in the kernel's format; never negative in practice.
        let signed = |n: usize| {
            fields
                .get(n - 3)?
                .parse::<i64>()
                .ok()
                .map(|v| v.max(0) as u64)
        };
        Some(Self {
            pid,
            ppid: field(4)? as u32,
            start_time: field(22)?,
            own: field(14)? + field(15)?,
            reaped: signed(16)? + signed(17)?,
        })
    }

    /// The process's figures now; none when it is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(pid, &line)
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc`'s CPU times.
pub fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            // Linux's USER_HZ, the same on every architecture the harness runs on.
            .unwrap_or(100) as f64
    })
}

/// The harness process's own CPU seconds so far (every thread; not its children).
pub fn own_seconds() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(u.user_time()) + seconds(u.system_time())
    })
}

/// Every process on the machine at one moment, and who is whose child.
pub struct ProcessTable {
    by_pid: HashMap<u32, ProcStat>,
    children: HashMap<u32, Vec<u32>>,
}

impl ProcessTable {
    /// Reads `/proc`, in ascending pid order, so a parent is mostly read
    /// before its children: a child reaped in between is then missed for
    /// one reading rather than counted twice (once live, once reaped).
    pub fn scan() -> Self {
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        pids.sort_unstable();
        Self::of(pids.into_iter().filter_map(ProcStat::read))
    }

    /// A table of the given processes.
    pub fn of(stats: impl IntoIterator<Item = ProcStat>) -> Self {
        let mut by_pid = HashMap::new();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for stat in stats {
            children.entry(stat.ppid).or_default().push(stat.pid);
            by_pid.insert(stat.pid, stat);
        }
        Self { by_pid, children }
    }

    /// The CPU ticks of `root` and every live descendant, each with what it
    /// has reaped, and `root`'s start time; none when `root` is gone.
    pub fn tree(&self, root: u32) -> Option<(u64, u64)> {
        let start = self.by_pid.get(&root)?.start_time;
        let mut ticks = 0;
        let mut todo = vec![root];
        while let Some(pid) = todo.pop() {
            if let Some(stat) = self.by_pid.get(&pid) {
                ticks += stat.own + stat.reaped;
            }
            if let Some(kids) = self.children.get(&pid) {
                // pid 0's "children" are the kernel's roots: never a tree of ours.
                todo.extend(kids.iter().filter(|&&k| k != pid && k != 0));
            }
        }
        Some((start, ticks))
    }
}

/// Where a component's CPU is read from.
#[derive(Clone, Debug)]
pub enum CpuSource {
    /// A process tree the harness runs, rooted at the watched pid.
    Process(PidWatch),
    /// Several that make one component (a Redis Cluster's nodes), summed:
    /// each keeps its own tally, so a node killed keeps what it had spent
    /// and its replacement adds to it.
    Processes(Vec<PidWatch>),
    /// Not readable here, and why (an external server, a remote instance).
    Unknown(String),
}

impl CpuSource {
    /// A Redis or Postgres: its process when the harness runs it.
    pub fn of_server(server: &Server, label: &str) -> Self {
        match server.process() {
            Some(process) => Self::Process(process.pid_watch()),
            None => Self::Unknown(format!(
                "unknown: {label} is {} the harness does not run, so its processes are not read",
                server.provided_as()
            )),
        }
    }

    /// A private cluster's nodes; none for an existing cluster, whose nodes
    /// have no pids here (its Redis CPU is `-`, as for a run without Redis).
    pub fn of_cluster(cluster: &RedisCluster) -> Option<Self> {
        let nodes = cluster.processes();
        (!nodes.is_empty()).then(|| Self::Processes(nodes.iter().map(|n| n.pid_watch()).collect()))
    }
}

/// One component's CPU across the processes it has had.
#[derive(Debug, Default)]
struct Tally {
    /// The process read last: (pid, start time).
    current: Option<(u32, u64)>,
    /// Its ticks when read last.
    last: u64,
    /// What the processes before it had spent when last read.
    retired: u64,
}

impl Tally {
    /// Takes a reading of the component's current process, if it runs;
    /// returns the ticks so far.
    fn observe(&mut self, now: Option<(u32, u64, u64)>) -> u64 {
        if let Some((pid, start, ticks)) = now {
            if self.current != Some((pid, start)) {
                self.retired += self.last;
                self.last = 0;
                self.current = Some((pid, start));
            }
            // A backend reaped between reading it and reading its parent is
            // missed once; the figure holds still rather than dip.
            self.last = self.last.max(ticks);
        }
        self.retired + self.last
    }
}

#[derive(Debug)]
struct Part {
    name: String,
    source: CpuSource,
    /// One per watched process, in the source's order.
    tallies: Vec<Tally>,
}

impl Part {
    fn new(name: &str, source: CpuSource) -> Self {
        Self {
            name: name.to_owned(),
            source,
            tallies: Vec::new(),
        }
    }

    /// Seconds so far, summed over its processes; none when unknown or
    /// none was ever seen running.
    fn read(&mut self, table: &ProcessTable) -> Option<f64> {
        let watches = match &self.source {
            CpuSource::Process(watch) => std::slice::from_ref(watch),
            CpuSource::Processes(watches) => watches.as_slice(),
            CpuSource::Unknown(_) => return None,
        };
        self.tallies.resize_with(watches.len(), Tally::default);
        let mut ticks = 0;
        for (watch, tally) in watches.iter().zip(&mut self.tallies) {
            let now = watch
                .get()
                .and_then(|pid| table.tree(pid).map(|(start, ticks)| (pid, start, ticks)));
            ticks += tally.observe(now);
        }
        self.tallies
            .iter()
            .any(|t| t.current.is_some())
            .then(|| ticks as f64 / ticks_per_second())
    }
}

/// Reads a stage's CPU, keeping each component's tally across its
/// restarts; clones share the tallies (the run's samplers and its readings
/// at the load's start and end).
#[derive(Clone, Debug)]
pub struct CpuMeter(Arc<Mutex<Parts>>);

#[derive(Debug)]
struct Parts {
    instances: Vec<Part>,
    redis: Option<Part>,
    postgres: Option<Part>,
}

impl CpuMeter {
    /// The components given: instances by id, and the stores the run has.
    pub fn new(
        instances: Vec<(String, CpuSource)>,
        redis: Option<CpuSource>,
        postgres: Option<CpuSource>,
    ) -> Self {
        Self(Arc::new(Mutex::new(Parts {
            instances: instances
                .into_iter()
                .map(|(id, source)| Part::new(&id, source))
                .collect(),
            redis: redis.map(|s| Part::new(REDIS, s)),
            postgres: postgres.map(|s| Part::new(POSTGRES, s)),
        })))
    }

    /// A stack's instances and stores; a private cluster's nodes are its Redis.
    pub fn of(stack: &Stack) -> Self {
        let instances = stack
            .instances
            .iter()
            .map(|i| {
                let source = match &i.process {
                    Some(process) => CpuSource::Process(process.pid_watch()),
                    None => CpuSource::Unknown(
                        "unknown: the instance runs elsewhere (a remote app)".into(),
                    ),
                };
                (i.id.to_string(), source)
            })
            .collect();
        Self::new(
            instances,
            stack
                .redis
                .as_ref()
                .map(|r| CpuSource::of_server(r, "Redis"))
                .or_else(|| stack.redis_cluster.as_ref().and_then(CpuSource::of_cluster)),
            stack
                .postgres
                .as_ref()
                .map(|p| CpuSource::of_server(p, "Postgres")),
        )
    }

    /// Every component's seconds so far.
    pub fn read(&self) -> CpuSample {
        let table = ProcessTable::scan();
        let mut parts = self.0.lock();
        let instances = parts
            .instances
            .iter_mut()
            .filter_map(|p| Some((p.name.clone(), p.read(&table)?)))
            .collect();
        CpuSample {
            instances,
            redis: parts.redis.as_mut().and_then(|p| p.read(&table)),
            postgres: parts.postgres.as_mut().and_then(|p| p.read(&table)),
            harness: own_seconds(),
        }
    }

    /// The components whose CPU cannot be read, by name, and why.
    pub fn unknown(&self) -> BTreeMap<String, String> {
        let parts = self.0.lock();
        parts
            .instances
            .iter()
            .chain(&parts.redis)
            .chain(&parts.postgres)
            .filter_map(|p| match &p.source {
                CpuSource::Unknown(why) => Some((p.name.clone(), why.clone())),
                CpuSource::Process(_) | CpuSource::Processes(_) => None,
            })
            .collect()
    }

    /// The instances' ids, and whether the run has a Redis and a Postgres.
    pub fn components(&self) -> (Vec<String>, bool, bool) {
        let parts = self.0.lock();
        (
            parts.instances.iter().map(|p| p.name.clone()).collect(),
            parts.redis.is_some(),
            parts.postgres.is_some(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_parses_whatever_the_command_name_holds() {
        let line = "4242 (post gres) (x)) S 4000 4242 4242 0 -1 4194560 1 0 0 0 \
                    37 12 5 -1 20 0 1 0 987654 1000 10 18446744073709551615";
        let stat = ProcStat::parse(4242, line).expect("parses");
        assert_eq!(stat.ppid, 4000);
        assert_eq!(stat.own, 49);
        assert_eq!(stat.reaped, 5, "a negative cstime counts as none");
        assert_eq!(stat.start_time, 987654);
        assert_eq!(ProcStat::parse(1, "1 (x) S 0 1"), None, "cut short");
    }

    #[test]
    fn a_tree_counts_live_descendants_and_what_each_reaped() {
        let stat = |pid, ppid, own, reaped| ProcStat {
            pid,
            ppid,
            start_time: pid as u64,
            own,
            reaped,
        };
        let table = ProcessTable::of([
            stat(10, 1, 5, 100),
            stat(11, 10, 7, 0),
            stat(12, 11, 3, 2),
            stat(20, 1, 1000, 0),
        ]);
        assert_eq!(table.tree(10), Some((10, 117)));
        assert_eq!(table.tree(12), Some((12, 5)));
        assert_eq!(table.tree(99), None);
    }

    #[test]
    fn a_tally_keeps_what_earlier_processes_spent() {
        let mut tally = Tally::default();
        assert_eq!(tally.observe(None), 0);
        assert_eq!(tally.observe(Some((7, 1, 40))), 40);
        assert_eq!(tally.observe(Some((7, 1, 35))), 40, "never backwards");
        assert_eq!(tally.observe(None), 40, "down: what it had");
        assert_eq!(tally.observe(Some((8, 2, 5))), 45, "a new process adds");
        assert_eq!(
            tally.observe(Some((7, 3, 1))),
            46,
            "a reused pid is a new process"
        );
    }
}
