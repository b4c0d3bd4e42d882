//! Fault schedules from scenario files: which component to hurt, when and for
//! how long, checked against the stack before it starts, then run against it
//! with every step kept on a timeline.
//!
//! ```toml
//! [[faults]]
//! at = "5s"                 # after the stack is ready
//! action = "redis-pause"
//! for = "2s"                # undone (resumed) after that long
//!
//! [[faults]]
//! at = "10s"
//! action = "network"        # through the proxy between instances and a store
//! store = "redis"
//! instances = [1]           # app-1 only; every instance when absent
//! set = { latency = "50ms", jitter = "10ms" }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mock_idp::faults::FaultConfig;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::network::NetworkFaults;
use crate::services::ServiceError;
use crate::services::redis::Redis;
use crate::stack::{Stack, stores_needed};
use crate::store_links::Store;

/// What can go wrong reading a schedule.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Already formatted as `file:line:column: message`.
    #[error("{0}")]
    Invalid(String),
}

/// One action on one component. Instances are numbered from 1, as `app-1`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
// Actions without parameters are empty struct variants: serde checks unknown
// fields only in struct variants, and a stray field must not pass silently.
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultAction {
    /// SIGTERM, drain, start again on the same port.
    InstanceRestart {
        instance: usize,
    },
    /// SIGKILL, start again on the same port.
    InstanceCrash {
        instance: usize,
    },
    RedisRestart {},
    RedisFlush {},
    /// SIGSTOP; undone by `for` or `redis-resume`.
    RedisPause {},
    RedisResume {},
    PostgresRestart {},
    /// The IdP's fault controls, as its `/admin/faults` takes them; undone by
    /// `for` or `idp-clear`.
    Idp {
        set: FaultConfig,
    },
    IdpClear {},
    /// Faults on the proxied paths to a store; undone by `for` or `network-clear`.
    Network {
        store: Store,
        #[serde(default)]
        instances: Vec<usize>,
        set: NetworkFaults,
    },
    NetworkClear {
        store: Store,
        #[serde(default)]
        instances: Vec<usize>,
    },
    /// Resets (TCP RST) the connections open on those paths.
    NetworkReset {
        store: Store,
        #[serde(default)]
        instances: Vec<usize>,
    },
}

impl FaultAction {
    /// The action that undoes this one, for those a `for` can end.
    fn undo(&self) -> Option<FaultAction> {
        match self {
            FaultAction::RedisPause {} => Some(FaultAction::RedisResume {}),
            FaultAction::Idp { .. } => Some(FaultAction::IdpClear {}),
            FaultAction::Network {
                store, instances, ..
            } => Some(FaultAction::NetworkClear {
                store: *store,
                instances: instances.clone(),
            }),
            _ => None,
        }
    }

    fn instances(&self) -> &[usize] {
        match self {
            FaultAction::InstanceRestart { instance } | FaultAction::InstanceCrash { instance } => {
                std::slice::from_ref(instance)
            }
            FaultAction::Network { instances, .. }
            | FaultAction::NetworkClear { instances, .. }
            | FaultAction::NetworkReset { instances, .. } => instances,
            _ => &[],
        }
    }

    /// The store the action needs, if any.
    fn store(&self) -> Option<Store> {
        match self {
            FaultAction::RedisRestart {}
            | FaultAction::RedisFlush {}
            | FaultAction::RedisPause {}
            | FaultAction::RedisResume {} => Some(Store::Redis),
            FaultAction::PostgresRestart {} => Some(Store::Postgres),
            FaultAction::Network { store, .. }
            | FaultAction::NetworkClear { store, .. }
            | FaultAction::NetworkReset { store, .. } => Some(*store),
            _ => None,
        }
    }

    fn uses_network_proxy(&self) -> bool {
        matches!(
            self,
            FaultAction::Network { .. }
                | FaultAction::NetworkClear { .. }
                | FaultAction::NetworkReset { .. }
        )
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths = |instances: &[usize]| match instances {
            [] => "every instance".to_owned(),
            some => some
                .iter()
                .map(|i| format!("app-{i}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        match self {
            FaultAction::InstanceRestart { instance } => {
                write!(f, "instance-restart app-{instance}")
            }
            FaultAction::InstanceCrash { instance } => write!(f, "instance-crash app-{instance}"),
            FaultAction::RedisRestart {} => f.write_str("redis-restart"),
            FaultAction::RedisFlush {} => f.write_str("redis-flush"),
            FaultAction::RedisPause {} => f.write_str("redis-pause"),
            FaultAction::RedisResume {} => f.write_str("redis-resume"),
            FaultAction::PostgresRestart {} => f.write_str("postgres-restart"),
            FaultAction::Idp { set } => write!(
                f,
                "idp {}",
                serde_json::to_string(set).unwrap_or_else(|_| format!("{set:?}"))
            ),
            FaultAction::IdpClear {} => f.write_str("idp-clear"),
            FaultAction::Network {
                store,
                instances,
                set,
            } => write!(f, "network {store} from {}: {set}", paths(instances)),
            FaultAction::NetworkClear { store, instances } => {
                write!(f, "network-clear {store} from {}", paths(instances))
            }
            FaultAction::NetworkReset { store, instances } => {
                write!(f, "network-reset {store} from {}", paths(instances))
            }
        }
    }
}

/// One entry of a schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledFault {
    /// After the stack is ready.
    pub at: Duration,
    /// Undone after this long (only for actions that can be undone).
    pub lasts: Option<Duration>,
    pub action: FaultAction,
    /// `file:line:column` of the entry, for errors found later.
    pub origin: String,
}

/// The faults of a scenario file, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSchedule {
    pub faults: Vec<ScheduledFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default)]
    faults: Vec<toml::Spanned<toml::Table>>,
}

impl FaultSchedule {
    pub fn from_file(path: &Path) -> Result<Self, ScheduleError> {
        let text = std::fs::read_to_string(path).map_err(|error| ScheduleError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; errors point at `name:line:column`.
    pub fn parse(text: &str, name: &str) -> Result<Self, ScheduleError> {
        let at = |offset: usize| format!("{name}:{}", line_column(text, offset));
        let raw: RawSchedule = toml::from_str(text).map_err(|e| {
            let place = e.span().map_or_else(|| name.to_owned(), |s| at(s.start));
            ScheduleError::Invalid(format!("{place}: {}", e.message().trim_end()))
        })?;
        let mut faults = Vec::with_capacity(raw.faults.len());
        for (index, entry) in raw.faults.into_iter().enumerate() {
            let origin = at(entry.span().start);
            let fault = parse_entry(entry.into_inner(), &origin).map_err(|why| {
                ScheduleError::Invalid(format!("{origin}: faults[{index}]: {why}"))
            })?;
            faults.push(fault);
        }
        Ok(Self { faults })
    }

    /// Whether the stack must route store traffic through the fault proxy.
    pub fn needs_network_proxy(&self) -> bool {
        self.faults.iter().any(|f| f.action.uses_network_proxy())
    }

    /// Refuses actions the stack will not have a target for.
    pub fn check(&self, topology: &str, instances: usize) -> Result<(), ScheduleError> {
        let (redis, postgres) =
            stores_needed(topology).map_err(|e| ScheduleError::Invalid(e.to_string()))?;
        for fault in &self.faults {
            let refuse = |why: String| {
                Err(ScheduleError::Invalid(format!(
                    "{}: {}: {why}",
                    fault.origin, fault.action
                )))
            };
            if let Some(&n) = fault.action.instances().iter().find(|&&n| n > instances) {
                return refuse(format!("there is no app-{n} with {instances} instances"));
            }
            let present = match fault.action.store() {
                Some(Store::Redis) => redis,
                Some(Store::Postgres) => postgres,
                None => true,
            };
            if !present {
                return refuse(format!("{topology} runs without that store"));
            }
        }
        Ok(())
    }

    /// Every step in time order, undo steps included.
    fn steps(&self) -> Vec<(Duration, FaultAction)> {
        let mut steps = Vec::new();
        for fault in &self.faults {
            steps.push((fault.at, fault.action.clone()));
            if let (Some(lasts), Some(undo)) = (fault.lasts, fault.action.undo()) {
                steps.push((fault.at + lasts, undo));
            }
        }
        // Stable: steps due at the same time keep file order.
        steps.sort_by_key(|(at, _)| *at);
        steps
    }

    /// Runs the schedule against `stack` from now; a step that fails is kept
    /// on the timeline with its error and the rest still run.
    pub async fn run(
        &self,
        stack: &mut Stack,
        mut on_step: impl FnMut(&TimelineEvent),
    ) -> Vec<TimelineEvent> {
        let start = Instant::now();
        let mut timeline = Vec::new();
        for (due, action) in self.steps() {
            tokio::time::sleep_until(start + due).await;
            let at = start.elapsed();
            let outcome = apply(stack, &action).await;
            let done = start.elapsed();
            let event = TimelineEvent {
                at_ms: at.as_secs_f64() * 1e3,
                took_ms: (done - at).as_secs_f64() * 1e3,
                action: action.to_string(),
                error: outcome.err().map(|e| e.to_string()),
            };
            on_step(&event);
            timeline.push(event);
        }
        timeline
    }
}

/// A step as it happened.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEvent {
    /// Since the schedule started.
    pub at_ms: f64,
    pub took_ms: f64,
    pub action: String,
    /// Why the step failed; absent when it worked.
    pub error: Option<String>,
}

impl fmt::Display for TimelineEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:.3}s {}", self.at_ms / 1e3, self.action)?;
        match &self.error {
            None => write!(f, ": ok in {:.0} ms", self.took_ms),
            Some(error) => write!(f, ": FAILED: {error}"),
        }
    }
}

fn parse_entry(mut table: toml::Table, origin: &str) -> Result<ScheduledFault, String> {
    let duration = |table: &mut toml::Table, key: &str| -> Result<Option<Duration>, String> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(text)) => {
                humantime_serde::re::humantime::parse_duration(&text)
                    .map(Some)
                    .map_err(|e| format!("`{key}` = {text:?}: {e} (write e.g. \"500ms\", \"5s\")"))
            }
            Some(other) => Err(format!(
                "`{key}` must be a duration string such as \"5s\", not {other}"
            )),
        }
    };
    let at = duration(&mut table, "at")?.ok_or("`at` is missing (e.g. at = \"5s\")")?;
    let lasts = duration(&mut table, "for")?;
    let action: FaultAction = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim_end().to_owned())?;
    if lasts.is_some() && action.undo().is_none() {
        return Err(format!(
            "`for` cannot undo {action}; it applies to redis-pause, idp and network"
        ));
    }
    if action.instances().contains(&0) {
        return Err("instances are numbered from 1 (app-1)".into());
    }
    if let FaultAction::Network { set, .. } = &action
        && set.is_clear()
    {
        return Err("`set` names no fault; use network-clear to clear".into());
    }
    Ok(ScheduledFault {
        at,
        lasts,
        action,
        origin: origin.to_owned(),
    })
}

/// Carries out one action on the stack.
async fn apply(stack: &mut Stack, action: &FaultAction) -> Result<(), ServiceError> {
    let index = |instance: usize| -> Result<usize, ServiceError> {
        instance
            .checked_sub(1)
            .filter(|&i| i < stack.instances.len())
            .ok_or_else(|| ServiceError::Failed(format!("there is no app-{instance}")))
    };
    let indexes = |instances: &[usize]| {
        instances
            .iter()
            .map(|&i| index(i))
            .collect::<Result<Vec<_>, _>>()
    };
    match action {
        FaultAction::InstanceRestart { instance } => {
            let i = index(*instance)?;
            stack.restart_instance(i).await
        }
        FaultAction::InstanceCrash { instance } => {
            let i = index(*instance)?;
            stack.crash_instance(i).await
        }
        FaultAction::RedisRestart {} => redis(stack)?.restart().await,
        FaultAction::RedisFlush {} => redis(stack)?.flush().await,
        FaultAction::RedisPause {} => redis(stack)?.pause(),
        FaultAction::RedisResume {} => redis(stack)?.resume(),
        FaultAction::PostgresRestart {} => {
            stack
                .postgres
                .as_mut()
                .ok_or_else(|| missing(Store::Postgres))?
                .restart()
                .await
        }
        FaultAction::Idp { set } => stack.set_idp_faults(set).await,
        FaultAction::IdpClear {} => stack.set_idp_faults(&FaultConfig::default()).await,
        FaultAction::Network {
            store,
            instances,
            set,
        } => stack
            .set_network(*store, &indexes(instances)?, set)
            .map(drop),
        FaultAction::NetworkClear { store, instances } => stack
            .set_network(*store, &indexes(instances)?, &NetworkFaults::default())
            .map(drop),
        FaultAction::NetworkReset { store, instances } => {
            stack.reset_network(*store, &indexes(instances)?).map(drop)
        }
    }
}

fn redis(stack: &mut Stack) -> Result<&mut Redis, ServiceError> {
    stack.redis.as_mut().ok_or_else(|| missing(Store::Redis))
}

fn missing(store: Store) -> ServiceError {
    ServiceError::Failed(format!("this stack runs without {store}"))
}

/// `line:column`, both from 1, of a byte offset.
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[faults]]
at = "1s"
action = "redis-pause"
for = "500ms"

[[faults]]
at = "0s"
action = "network"
store = "postgres"
instances = [2]
set = { latency = "50ms", bandwidth = 1000 }
for = "3s"

[[faults]]
at = "2s"
action = "idp"
set = { outage = { endpoints = ["token"] } }

[[faults]]
at = "4s"
action = "instance-crash"
instance = 3
"#;

    fn error(text: &str) -> String {
        FaultSchedule::parse(text, "s.toml")
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn a_schedule_parses_and_orders_its_steps_with_their_undos() {
        let schedule = FaultSchedule::parse(EXAMPLE, "s.toml").expect("parses");
        assert_eq!(schedule.faults.len(), 4);
        assert_eq!(schedule.faults[0].origin, "s.toml:2:1");
        assert!(schedule.needs_network_proxy());
        let steps: Vec<String> = schedule
            .steps()
            .iter()
            .map(|(at, action)| format!("{}ms {action}", at.as_millis()))
            .collect();
        assert_eq!(
            steps,
            [
                "0ms network postgres from app-2: latency 50ms, bandwidth 1000 B/s",
                "1000ms redis-pause",
                "1500ms redis-resume",
                "2000ms idp {\"outage\":{\"endpoints\":[\"token\"]}}",
                "3000ms network-clear postgres from app-2",
                "4000ms instance-crash app-3",
            ]
        );
    }

    #[test]
    fn errors_point_at_file_line_and_column() {
        assert_eq!(
            error("[[faults]]\nat = \"1s\"\naction = \"redis-pase\"\n")
                .split(": ")
                .take(2)
                .collect::<Vec<_>>(),
            ["s.toml:1:1", "faults[0]"]
        );
        assert!(
            error("[[faults]]\nat = \"1s\"\naction = \"redis-pase\"\n").contains("redis-pause")
        );
        let syntax = error("\n\n[[faults]]\nat = 1s\n");
        assert!(syntax.starts_with("s.toml:4:"), "{syntax}");
        let typo = error("[[fault]]\nat = \"1s\"\n");
        assert!(
            typo.starts_with("s.toml:1:") && typo.contains("fault"),
            "{typo}"
        );
        let second = error(
            "[[faults]]\nat = \"1s\"\naction = \"redis-flush\"\n\n[[faults]]\naction = \"redis-flush\"\n",
        );
        assert!(
            second.starts_with("s.toml:5:1: faults[1]: `at` is missing"),
            "{second}"
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        let cases = [
            ("at = \"soon\"\naction = \"redis-flush\"", "\"soon\""),
            ("at = 5\naction = \"redis-flush\"", "duration string"),
            (
                "at = \"1s\"\naction = \"redis-flush\"\nfor = \"1s\"",
                "`for` cannot undo redis-flush",
            ),
            (
                "at = \"1s\"\naction = \"instance-restart\"\ninstance = 0",
                "numbered from 1",
            ),
            ("at = \"1s\"\naction = \"instance-restart\"", "instance"),
            (
                "at = \"1s\"\naction = \"redis-flush\"\nstore = \"redis\"",
                "store",
            ),
            (
                "at = \"1s\"\naction = \"instance-crash\"\ninstance = 1\nsignal = 9",
                "signal",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"redis\"\nset = {}",
                "names no fault",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"mysql\"\nset = { blackhole = true }",
                "mysql",
            ),
            (
                "at = \"1s\"\naction = \"idp\"\nset = { outage = { endpoints = [\"tokne\"] } }",
                "tokne",
            ),
        ];
        for (entry, expected) in cases {
            let message = error(&format!("[[faults]]\n{entry}\n"));
            assert!(message.starts_with("s.toml:1:1: faults[0]: "), "{message}");
            assert!(message.contains(expected), "{entry:?} -> {message}");
        }
    }

    #[test]
    fn check_refuses_targets_the_topology_does_not_have() {
        let schedule = FaultSchedule::parse(EXAMPLE, "s.toml").expect("parses");
        schedule.check("option4", 3).expect("all there");
        let few = schedule
            .check("option4", 2)
            .expect_err("no app-3")
            .to_string();
        assert!(
            few.contains("s.toml:20:1") && few.contains("no app-3"),
            "{few}"
        );
        let no_redis = schedule
            .check("option2", 3)
            .expect_err("no redis")
            .to_string();
        assert!(
            no_redis.contains("redis-pause") && no_redis.contains("option2"),
            "{no_redis}"
        );
        assert!(schedule.check("option9", 3).is_err());
    }

    #[test]
    fn an_empty_file_is_an_empty_schedule() {
        assert_eq!(
            FaultSchedule::parse("", "s.toml").expect("parses"),
            FaultSchedule::default()
        );
    }
}
