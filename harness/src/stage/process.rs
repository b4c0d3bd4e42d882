//! Child processes the harness owns: each in its own process group, killed with
//! the harness however it ends, its output in a log file.
//!
//! Three layers make sure no child outlives the harness: `Drop` kills the
//! group (normal end, error, panic); the `up` command turns SIGINT/SIGTERM
//! into a normal end; and the kernel sends SIGKILL to a child whose parent
//! dies (`PR_SET_PDEATHSIG`), which covers a SIGKILL of the harness itself.
//! That signal fires when the *thread* that spawned the child exits, so
//! children must be spawned from long-lived threads (runtime workers or
//! main), never from `spawn_blocking`.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Why a child could not be run or controlled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot signal {name}: {source}")]
    Signal { name: String, source: nix::Error },
    #[error("waiting for {name}: {source}")]
    Wait {
        name: String,
        source: std::io::Error,
    },
}

/// How to start a child, kept so it can be started again (restart, crash).
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// A short name for errors and log files (`redis`, `app-2`).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Stdout and stderr go here (appended, so restarts keep the history).
    pub log: PathBuf,
    /// Run as this uid and gid (Postgres refuses root).
    pub user: Option<(u32, u32)>,
    /// The working directory (the harness's own when absent).
    pub dir: Option<PathBuf>,
}

impl ChildSpec {
    pub fn new(name: &str, program: impl Into<PathBuf>, log_dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            log: log_dir.join(format!("{name}.log")),
            user: None,
            dir: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }
}

/// A child's current pid as it changes (a respawn gives a new one; none
/// while it is down), for readers on other tasks: the sampler's CPU figures.
#[derive(Clone, Debug, Default)]
pub struct PidWatch(Arc<AtomicU32>);

impl PidWatch {
    pub fn get(&self) -> Option<u32> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&pid| pid != 0)
    }

    fn set(&self, pid: Option<u32>) {
        self.0.store(pid.unwrap_or(0), Ordering::Relaxed);
    }
}

/// A running child and the spec it came from.
pub struct Supervised {
    spec: ChildSpec,
    child: tokio::process::Child,
    pid: u32,
    exited: bool,
    watch: PidWatch,
}

impl Supervised {
    /// Starts the child in a new process group, with a parent-death signal.
    pub fn spawn(spec: ChildSpec) -> Result<Self, ProcessError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|source| ProcessError::Log {
                path: spec.log.clone(),
                source,
            })?;
        let err_log = log.try_clone().map_err(|source| ProcessError::Log {
            path: spec.log.clone(),
            source,
        })?;
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = spec.user {
            command.uid(uid).gid(gid);
        }
        if let Some(dir) = &spec.dir {
            command.current_dir(dir);
        }
        set_parent_death_signal(&mut command);
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            name: spec.name.clone(),
            program: spec.program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let watch = PidWatch::default();
        watch.set(Some(pid));
        Ok(Self {
            spec,
            child,
            pid,
            exited: false,
            watch,
        })
    }

    /// Its pid from now on, across respawns.
    pub fn pid_watch(&self) -> PidWatch {
        self.watch.clone()
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.spec.log
    }

    /// Sends `signal` to the child's whole process group.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        if self.exited {
            return Ok(());
        }
        killpg(Pid::from_raw(self.pid as i32), signal).map_err(|source| ProcessError::Signal {
            name: self.spec.name.clone(),
            source,
        })
    }

    /// Asks the group to stop with `signal`; after `grace`, kills it. Waits for the child.
    pub async fn stop(&mut self, signal: Signal, grace: Duration) -> Result<(), ProcessError> {
        if self.exited {
            return Ok(());
        }
        // A stopped (paused) process cannot act on a signal until continued.
        let _ = self.signal(Signal::SIGCONT);
        match self.signal(signal) {
            // Already gone by itself: nothing to ask, only to reap.
            Err(ProcessError::Signal {
                source: nix::Error::ESRCH,
                ..
            }) => {}
            other => other?,
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.signal(Signal::SIGKILL)?;
        }
        self.wait().await
    }

    /// Kills the group at once (a crash).
    pub async fn kill(&mut self) -> Result<(), ProcessError> {
        self.stop(Signal::SIGKILL, Duration::from_secs(5)).await
    }

    async fn wait(&mut self) -> Result<(), ProcessError> {
        self.child
            .wait()
            .await
            .map_err(|source| ProcessError::Wait {
                name: self.spec.name.clone(),
                source,
            })?;
        self.exited = true;
        self.watch.set(None);
        Ok(())
    }

    /// Starts the same spec again (after [`Supervised::stop`] or [`Supervised::kill`]).
    pub fn respawn(&mut self) -> Result<(), ProcessError> {
        let watch = self.watch.clone();
        *self = Self::spawn(self.spec.clone())?;
        watch.set(Some(self.pid));
        self.watch = watch;
        Ok(())
    }

    /// Whether the child has exited on its own.
    pub fn has_exited(&mut self) -> bool {
        let exited = self.exited || matches!(self.child.try_wait(), Ok(Some(_)));
        if exited {
            self.watch.set(None);
        }
        exited
    }

    /// How the child ended, if it exited by itself since it was (re)started
    /// (not by [`Supervised::stop`] or [`Supervised::kill`]): once, then it
    /// counts as reaped.
    pub fn exited_by_itself(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited {
            return None;
        }
        let status = self.child.try_wait().ok().flatten()?;
        self.exited = true;
        Some(status)
    }
}

/// The last `count` lines of a log file (an instance's stdout and stderr),
/// each cut to a readable length; none when it cannot be read.
pub fn log_tail(path: &Path, count: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    /// Enough bytes for the last lines of any sane log.
    const TAIL_BYTES: u64 = 16 * 1024;
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    if file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .is_err()
    {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| match line.char_indices().nth(300) {
            Some((end, _)) => format!("{}...", &line[..end]),
            None => (*line).to_owned(),
        })
        .collect()
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.exited {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// Has the kernel send SIGKILL to the child when the harness dies.
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only
    // prctl(2), which is async-signal-safe; it allocates nothing and takes no
    // locks. It runs after the uid/gid change, which would otherwise reset it.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// Whether a process with this pid exists (signal 0 probes without signalling).
pub fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// Whether a child has exited (gone, or a zombie not reaped yet), told
/// without the handle: a readiness wait only looks.
pub fn exited(pid: u32) -> bool {
    if !alive(pid) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// A name prefix that marks what this process leaves in a shared folder,
/// `<kind><pid>-`, so a later harness can tell leftovers of a dead one.
pub fn owned_prefix(kind: &str) -> String {
    format!("{kind}{}-", std::process::id())
}

/// Entries of `parent` named `<kind><pid>-…` whose process is gone: left by a
/// harness that was SIGKILLed, so its own cleanup never ran.
pub fn abandoned(parent: &Path, kind: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|n| n.strip_prefix(kind))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            owner.is_some_and(|pid| !alive(pid))
        })
        .map(|entry| entry.path())
        .collect()
}

/// The one readiness wait: asks `ready` every 10 ms until it says yes or
/// `timeout` passes; returns whether it said yes.
pub async fn poll_until<F, Fut>(timeout: Duration, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if ready().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port nothing listens on right now, and one this process has not
/// handed out before.
///
/// The port is free only until someone binds it: the child it is meant for
/// binds it a moment later. The kernel may offer the same port again in
/// between (it did: two instances of one stack got one port, the second
/// failed to bind, and the first answered for both), so the ports handed
/// out are remembered for the life of the process and never offered twice.
pub fn free_port() -> std::io::Result<u16> {
    static HANDED_OUT: parking_lot::Mutex<std::collections::BTreeSet<u16>> =
        parking_lot::Mutex::new(std::collections::BTreeSet::new());
    // Each try asks the kernel for a fresh ephemeral port; a few hundred
    // tries cannot all land on ports already handed out unless this
    // process used up the range.
    for _ in 0..512 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if HANDED_OUT.lock().insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "every free port the kernel offered was already handed out by this process",
    ))
}

#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn free_port_never_hands_out_one_port_twice() {
        let mut seen = std::collections::BTreeSet::new();
        // 1,000 draws from ~28,000 ephemeral ports: the kernel alone repeats
        // one about 18 times.
        for _ in 0..1000 {
            let port = free_port().expect("a free port");
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }
}
