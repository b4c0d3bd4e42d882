//! This machine: its name, OS, CPUs and memory as the results name them,
//! and the refusal of a run it cannot hold (before anything starts).

use crate::results::HostFacts;
use crate::scenario::ScenarioError;
use crate::scenario::capacity::Estimate;
use crate::shard::Shard;

/// This machine, as the results name it.
pub fn host_facts() -> HostFacts {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    HostFacts {
        hostname: read("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        os: std::env::consts::OS.to_owned(),
        kernel: read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: read("/proc/meminfo").and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kib| kib * 1024)
        }),
    }
}

/// What names this machine's runs in the results by default: the host
/// name, and `-shardIofN` under `--shard`, so two shards on one machine
/// stay two sources in a merge.
pub fn source_name(shard: Option<Shard>) -> String {
    let host = host_facts().hostname;
    match shard {
        Some(shard) => format!("{host}-shard{}of{}", shard.index, shard.count),
        None => host,
    }
}

/// Refuses a run this machine cannot hold, before anything starts (a
/// machine whose memory cannot be read is not refused).
pub fn fits_this_machine(estimate: Estimate) -> Result<(), ScenarioError> {
    match host_facts().memory_bytes {
        Some(memory) => match estimate.too_big_for(memory) {
            Some(why) => Err(ScenarioError::Bound(why)),
            None => Ok(()),
        },
        None => Ok(()),
    }
}
