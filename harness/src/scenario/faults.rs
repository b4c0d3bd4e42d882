//! The `[[faults]]` of a scenario file: which component to hurt, when and
//! for how long, read with every mistake placed at the value that is wrong,
//! and checked against the stack's topology before anything starts.
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
//!
//! [[faults]]
//! at = "6s"
//! action = "network"        # on a private Redis Cluster: one node's proxy,
//! store = "redis-cluster"   # which every client of that node shares
//! node = 1                  # redis-cluster-1 (1-3 start as masters); every node when absent
//! set = { blackhole = true }
//! for = "4s"
//!
//! [[faults]]
//! at = "8s"
//! action = "redis-reshard"  # on a Redis Cluster: slots moved between masters
//! share = 0.25              # of the fullest master's slots, 0 < share <= 1
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::time::Duration;

use mock_idp::faults::FaultConfig;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::source::{Position, ScenarioError, Source};
use super::time::Offset;
use crate::model::app::AppShape;
use crate::model::ids::{InstanceId, StoreKind};
use crate::model::network::NetworkFaults;
use crate::stage::services::redis_cluster::{MASTERS, NODES};

/// One action on one component.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// SIGTERM, drain, start again on the same port.
    InstanceRestart(InstanceId),
    /// SIGKILL, start again on the same port at once, or, with a `for`,
    /// only after that long (the instance is down meanwhile).
    InstanceCrash {
        id: InstanceId,
        stay_down: bool,
    },
    /// Starts an instance a crash left down (the undo of a crash's `for`).
    InstanceStart(InstanceId),
    RedisRestart,
    RedisFlush,
    /// Saves the dataset to disk (`SAVE`); a later restart loads this
    /// snapshot: Redis comes back with older contents than it went down with.
    RedisSnapshot,
    /// SIGSTOP; undone by `for` or `redis-resume`.
    RedisPause,
    RedisResume,
    /// On a Redis Cluster: SIGKILL one master (one with a live replica);
    /// its replica is promoted, then the killed node rejoins as a replica.
    RedisMasterKill,
    /// On a Redis Cluster: a graceful `CLUSTER FAILOVER` on one replica.
    RedisFailover,
    /// On a Redis Cluster: `share` of the slots of the master that serves the
    /// most moved, keys and all, to the one that serves the fewest, while it serves.
    RedisReshard {
        share: f64,
    },
    PostgresRestart,
    /// SIGKILL (no shutdown), reap, and start again on the same port and
    /// data dir; with a `for`, only after that long (down meanwhile).
    PostgresCrash {
        stay_down: bool,
    },
    /// Starts a Postgres a crash left down (the undo of a crash's `for`).
    PostgresStart,
    /// The IdP's fault controls, as its `/admin/faults` takes them; undone by
    /// `for` or `idp-clear`.
    Idp(FaultConfig),
    IdpClear,
    /// Faults on the proxied paths to a store (every instance's when the
    /// list is empty); undone by `for` or `network-clear`. On a Redis
    /// Cluster, on the proxy in front of node `node` (1-based, as
    /// `redis-cluster-N`; every node when none), which all of that node's
    /// clients share: `instances` is then empty.
    Network {
        store: StoreKind,
        instances: Vec<InstanceId>,
        node: Option<usize>,
        set: NetworkFaults,
    },
    NetworkClear {
        store: StoreKind,
        instances: Vec<InstanceId>,
        node: Option<usize>,
    },
    /// Resets (TCP RST) the connections open on those paths.
    NetworkReset {
        store: StoreKind,
        instances: Vec<InstanceId>,
        node: Option<usize>,
    },
}

impl FaultAction {
    /// The action that undoes this one, for those a `for` can end.
    pub fn undo(&self) -> Option<FaultAction> {
        match self {
            FaultAction::RedisPause => Some(FaultAction::RedisResume),
            FaultAction::InstanceCrash {
                id,
                stay_down: true,
            } => Some(FaultAction::InstanceStart(*id)),
            FaultAction::PostgresCrash { stay_down: true } => Some(FaultAction::PostgresStart),
            FaultAction::Idp(_) => Some(FaultAction::IdpClear),
            FaultAction::Network {
                store,
                instances,
                node,
                ..
            } => Some(FaultAction::NetworkClear {
                store: *store,
                instances: instances.clone(),
                node: *node,
            }),
            _ => None,
        }
    }

    /// The instances the action names.
    pub fn instances(&self) -> &[InstanceId] {
        match self {
            FaultAction::InstanceRestart(id)
            | FaultAction::InstanceCrash { id, .. }
            | FaultAction::InstanceStart(id) => std::slice::from_ref(id),
            FaultAction::Network { instances, .. }
            | FaultAction::NetworkClear { instances, .. }
            | FaultAction::NetworkReset { instances, .. } => instances,
            _ => &[],
        }
    }

    /// Whether the action signals an instance's process (restart, crash, kill, start).
    pub fn is_process_fault(&self) -> bool {
        matches!(
            self,
            FaultAction::InstanceRestart(_)
                | FaultAction::InstanceCrash { .. }
                | FaultAction::InstanceStart(_)
        )
    }

    /// The store the action needs, if any.
    pub fn store(&self) -> Option<StoreKind> {
        match self {
            FaultAction::RedisRestart
            | FaultAction::RedisFlush
            | FaultAction::RedisSnapshot
            | FaultAction::RedisPause
            | FaultAction::RedisResume => Some(StoreKind::Redis),
            FaultAction::RedisMasterKill
            | FaultAction::RedisFailover
            | FaultAction::RedisReshard { .. } => Some(StoreKind::RedisCluster),
            FaultAction::PostgresRestart
            | FaultAction::PostgresCrash { .. }
            | FaultAction::PostgresStart => Some(StoreKind::Postgres),
            FaultAction::Network { store, .. }
            | FaultAction::NetworkClear { store, .. }
            | FaultAction::NetworkReset { store, .. } => Some(*store),
            _ => None,
        }
    }

    pub fn uses_network_proxy(&self) -> bool {
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
        let paths = |store: &StoreKind, instances: &[InstanceId], node: &Option<usize>| {
            let instances = match instances {
                [] => "every instance".to_owned(),
                some => some
                    .iter()
                    .map(InstanceId::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            };
            match (store, node) {
                (StoreKind::RedisCluster, Some(node)) => format!("node {node}"),
                (StoreKind::RedisCluster, None) => "every node".to_owned(),
                (_, _) => format!("from {instances}"),
            }
        };
        match self {
            FaultAction::InstanceRestart(id) => write!(f, "instance-restart {id}"),
            FaultAction::InstanceCrash { id, stay_down } => {
                write!(f, "instance-crash {id}")?;
                if *stay_down {
                    f.write_str(" (down until started)")?;
                }
                Ok(())
            }
            FaultAction::InstanceStart(id) => write!(f, "instance-start {id}"),
            FaultAction::RedisRestart => f.write_str("redis-restart"),
            FaultAction::RedisFlush => f.write_str("redis-flush"),
            FaultAction::RedisSnapshot => f.write_str("redis-snapshot"),
            FaultAction::RedisPause => f.write_str("redis-pause"),
            FaultAction::RedisResume => f.write_str("redis-resume"),
            FaultAction::RedisMasterKill => f.write_str("redis-master-kill"),
            FaultAction::RedisFailover => f.write_str("redis-failover"),
            FaultAction::RedisReshard { share } => write!(f, "redis-reshard {share}"),
            FaultAction::PostgresRestart => f.write_str("postgres-restart"),
            FaultAction::PostgresCrash { stay_down } => {
                f.write_str("postgres-crash")?;
                if *stay_down {
                    f.write_str(" (down until started)")?;
                }
                Ok(())
            }
            FaultAction::PostgresStart => f.write_str("postgres-start"),
            FaultAction::Idp(set) => write!(
                f,
                "idp {}",
                serde_json::to_string(set).unwrap_or_else(|_| format!("{set:?}"))
            ),
            FaultAction::IdpClear => f.write_str("idp-clear"),
            FaultAction::Network {
                store,
                instances,
                node,
                set,
            } => write!(
                f,
                "network {store} {}: {set}",
                paths(store, instances, node)
            ),
            FaultAction::NetworkClear {
                store,
                instances,
                node,
            } => write!(f, "network-clear {store} {}", paths(store, instances, node)),
            FaultAction::NetworkReset {
                store,
                instances,
                node,
            } => write!(f, "network-reset {store} {}", paths(store, instances, node)),
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
    /// Skipped, rather than refused, on a topology without its target
    /// (a Redis fault in a scenario that also runs on option2).
    pub optional: bool,
    /// Where the entry starts, its action, and the instances it names, for
    /// errors found later (against the topology).
    pub origin: Position,
    pub action_at: Position,
    pub instances_at: Option<Position>,
}

impl ScheduledFault {
    /// Whether the app runs with the store this fault hurts.
    pub fn fits(&self, app: &impl AppShape) -> bool {
        let needs = app.needs();
        match self.action.store() {
            Some(StoreKind::Redis) => needs.redis,
            Some(StoreKind::Postgres) => needs.postgres,
            Some(StoreKind::RedisCluster) => needs.redis_cluster,
            None => true,
        }
    }
}

/// One step of a schedule: when, what, and which earlier step it undoes.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: FaultAction,
    pub ends: Option<usize>,
}

/// The faults of a scenario file, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSchedule {
    pub faults: Vec<ScheduledFault>,
}

impl FaultSchedule {
    /// Whether the stack must route store traffic through the fault proxy.
    pub fn needs_network_proxy(&self) -> bool {
        self.faults.iter().any(|f| f.action.uses_network_proxy())
    }

    /// Refuses actions the stack will not have a target for.
    pub fn check(&self, app: &impl AppShape, instances: NonZeroUsize) -> Result<(), ScenarioError> {
        self.check_instances(instances)?;
        self.check_ours(app)?;
        self.check_stores(app)
    }

    /// Refuses restarting or killing instances the harness did not start.
    pub fn check_ours(&self, app: &impl AppShape) -> Result<(), ScenarioError> {
        if app.instances_are_ours() {
            return Ok(());
        }
        match self.faults.iter().find(|f| f.action.is_process_fault()) {
            Some(fault) => Err(ScenarioError::Invalid {
                at: fault.action_at.clone(),
                message: format!(
                    "{}: target {} runs its instances elsewhere (given as URLs), so the harness cannot restart or kill them; store, network and IdP faults still apply",
                    fault.action,
                    app.name()
                ),
            }),
            None => Ok(()),
        }
    }

    /// Refuses an instance beyond the stack's count.
    pub fn check_instances(&self, instances: NonZeroUsize) -> Result<(), ScenarioError> {
        for fault in &self.faults {
            if let Some(id) = fault
                .action
                .instances()
                .iter()
                .find(|id| !id.within(instances.get()))
            {
                return Err(ScenarioError::Invalid {
                    at: fault
                        .instances_at
                        .clone()
                        .unwrap_or_else(|| fault.origin.clone()),
                    message: format!(
                        "{}: there is no {id}: the stack has {instances} instances",
                        fault.action
                    ),
                });
            }
        }
        Ok(())
    }

    /// Refuses a fault on a store the app runs without, unless it is optional.
    pub fn check_stores(&self, app: &impl AppShape) -> Result<(), ScenarioError> {
        match self.faults.iter().find(|f| !f.fits(app) && !f.optional) {
            Some(fault) => Err(ScenarioError::Invalid {
                at: fault.action_at.clone(),
                message: format!(
                    "{}: {} runs without that store ({}; `optional = true` skips it there)",
                    fault.action,
                    app.name(),
                    fault
                        .action
                        .store()
                        .map_or_else(String::new, |store| store.to_string())
                ),
            }),
            None => Ok(()),
        }
    }

    /// The faults that fit `app`: optional ones whose store it runs
    /// without are left out.
    pub fn for_app(&self, app: &impl AppShape) -> FaultSchedule {
        FaultSchedule {
            faults: self
                .faults
                .iter()
                .filter(|f| f.fits(app))
                .cloned()
                .collect(),
        }
    }

    /// Every step in time order, undo steps included; an undo step names
    /// the position (in this list) of the step it ends.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for fault in &self.faults {
            let start = steps.len();
            steps.push(Step {
                at: fault.at,
                action: fault.action.clone(),
                ends: None,
            });
            if let (Some(lasts), Some(undo)) = (fault.lasts, fault.action.undo()) {
                steps.push(Step {
                    at: fault.at + lasts,
                    action: undo,
                    ends: Some(start),
                });
            }
        }
        // Stable: steps due at the same time keep file order.
        let mut order: Vec<usize> = (0..steps.len()).collect();
        order.sort_by_key(|&i| steps[i].at);
        let position: Vec<usize> = {
            let mut position = vec![0; steps.len()];
            for (new, &old) in order.iter().enumerate() {
                position[old] = new;
            }
            position
        };
        order
            .into_iter()
            .map(|old| {
                let step = &steps[old];
                Step {
                    at: step.at,
                    action: step.action.clone(),
                    ends: step.ends.map(|e| position[e]),
                }
            })
            .collect()
    }
}

/// The action names a file may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ActionName {
    InstanceRestart,
    InstanceCrash,
    RedisRestart,
    RedisFlush,
    RedisSnapshot,
    RedisPause,
    RedisResume,
    RedisMasterKill,
    RedisFailover,
    RedisReshard,
    PostgresRestart,
    PostgresCrash,
    Idp,
    IdpClear,
    Network,
    NetworkClear,
    NetworkReset,
}

/// A `[[faults]]` entry as written; every field keeps its place in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    at: Option<Spanned<Offset>>,
    #[serde(rename = "for")]
    lasts: Option<Spanned<Offset>>,
    action: Option<Spanned<ActionName>>,
    instance: Option<Spanned<InstanceId>>,
    instances: Option<Spanned<Vec<InstanceId>>>,
    #[serde(default)]
    optional: bool,
    store: Option<Spanned<StoreKind>>,
    node: Option<Spanned<usize>>,
    set: Option<Spanned<toml::Value>>,
    share: Option<Spanned<f64>>,
}

impl RawFault {
    /// The entry as a fault; every mistake at its place in `source`.
    pub fn resolve(
        self,
        entry: &Range<usize>,
        index: usize,
        source: &Source<'_>,
    ) -> Result<ScheduledFault, ScenarioError> {
        let error = |span: &Range<usize>, why: String| {
            source.error(span, format!("faults[{index}]: {why}"))
        };
        let missing = |what: &str, example: &str| {
            error(entry, format!("`{what}` is missing (e.g. {example})"))
        };
        let at = self.at.ok_or_else(|| missing("at", "at = \"5s\""))?;
        let action = self
            .action
            .ok_or_else(|| missing("action", "action = \"redis-pause\""))?;
        let name = *action.get_ref();
        let unused = |field: &str, span: Option<Range<usize>>| match span {
            Some(span) => Err(error(
                &span,
                format!("`{field}` does not apply to {}", kebab(name)),
            )),
            None => Ok(()),
        };
        // Which fields each action takes; any other present field is refused where it stands.
        let takes_instance = matches!(
            name,
            ActionName::InstanceRestart | ActionName::InstanceCrash
        );
        let takes_store = matches!(
            name,
            ActionName::Network | ActionName::NetworkClear | ActionName::NetworkReset
        );
        let takes_set = matches!(name, ActionName::Network | ActionName::Idp);
        if !takes_instance {
            unused("instance", self.instance.as_ref().map(Spanned::span))?;
        }
        if !takes_store {
            unused("store", self.store.as_ref().map(Spanned::span))?;
            unused("instances", self.instances.as_ref().map(Spanned::span))?;
            unused("node", self.node.as_ref().map(Spanned::span))?;
        }
        if !takes_set {
            unused("set", self.set.as_ref().map(Spanned::span))?;
        }
        if name != ActionName::RedisReshard {
            unused("share", self.share.as_ref().map(Spanned::span))?;
        }
        let instance = || {
            self.instance
                .as_ref()
                .map(|i| *i.get_ref())
                .ok_or_else(|| missing("instance", "instance = 1"))
        };
        let store = || {
            self.store
                .as_ref()
                .map(|s| *s.get_ref())
                .ok_or_else(|| missing("store", "store = \"redis\""))
        };
        // A cluster is aimed at by node (each node's proxy is every
        // client's path to it), any other store by instance.
        let node = |store: StoreKind| -> Result<Option<usize>, ScenarioError> {
            match (&self.node, store) {
                (None, _) => Ok(None),
                (Some(node), StoreKind::RedisCluster) => {
                    let number = *node.get_ref();
                    if !(1..=NODES).contains(&number) {
                        return Err(error(
                            &node.span(),
                            format!(
                                "there is no node {number}: a private Redis Cluster has nodes 1 to {NODES} \
                                 (redis-cluster-1 to -{MASTERS} start as masters, the rest as their replicas)"
                            ),
                        ));
                    }
                    Ok(Some(number))
                }
                (Some(node), other) => Err(error(
                    &node.span(),
                    format!(
                        "`node` aims at one node of a Redis Cluster (store = \"redis-cluster\"); store is {other}, aimed at with `instances`"
                    ),
                )),
            }
        };
        if let (Some(store), Some(instances)) = (&self.store, &self.instances)
            && *store.get_ref() == StoreKind::RedisCluster
        {
            return Err(error(
                &instances.span(),
                "`instances` does not apply to a Redis Cluster: each node's proxy carries every instance's \
                 traffic to it (and its replica's); aim with `node`"
                    .into(),
            ));
        }
        let instances = self
            .instances
            .as_ref()
            .map(|i| i.get_ref().clone())
            .unwrap_or_default();
        let set = || {
            self.set
                .clone()
                .ok_or_else(|| missing("set", "set = { ... }"))
        };
        let fault_action = match name {
            ActionName::InstanceRestart => FaultAction::InstanceRestart(instance()?),
            ActionName::InstanceCrash => FaultAction::InstanceCrash {
                id: instance()?,
                stay_down: self.lasts.is_some(),
            },
            ActionName::RedisRestart => FaultAction::RedisRestart,
            ActionName::RedisFlush => FaultAction::RedisFlush,
            ActionName::RedisSnapshot => FaultAction::RedisSnapshot,
            ActionName::RedisPause => FaultAction::RedisPause,
            ActionName::RedisResume => FaultAction::RedisResume,
            ActionName::RedisMasterKill => FaultAction::RedisMasterKill,
            ActionName::RedisFailover => FaultAction::RedisFailover,
            ActionName::RedisReshard => {
                let share = self
                    .share
                    .as_ref()
                    .ok_or_else(|| missing("share", "share = 0.25"))?;
                let value = *share.get_ref();
                if !(value > 0.0 && value <= 1.0) {
                    return Err(error(
                        &share.span(),
                        format!(
                            "`share` is {value}: it is the part of a master's slots to move, more than 0 and at most 1 (e.g. 0.25)"
                        ),
                    ));
                }
                FaultAction::RedisReshard { share: value }
            }
            ActionName::PostgresRestart => FaultAction::PostgresRestart,
            ActionName::PostgresCrash => FaultAction::PostgresCrash {
                stay_down: self.lasts.is_some(),
            },
            ActionName::IdpClear => FaultAction::IdpClear,
            ActionName::Idp => {
                let set = set()?;
                let span = set.span();
                let faults: FaultConfig = source
                    .value(&span, set.into_inner())
                    .map_err(|e| prefixed(e, index))?;
                if !faults.any() {
                    return Err(error(
                        &span,
                        "`set` names no fault; use idp-clear to clear".into(),
                    ));
                }
                faults.validate().map_err(|why| error(&span, why))?;
                FaultAction::Idp(faults)
            }
            ActionName::Network => {
                let set = set()?;
                let span = set.span();
                let faults: NetworkFaults = source
                    .value(&span, set.into_inner())
                    .map_err(|e| prefixed(e, index))?;
                if faults.is_clear() {
                    return Err(error(
                        &span,
                        "`set` names no fault; use network-clear to clear".into(),
                    ));
                }
                faults.check().map_err(|why| error(&span, why))?;
                let store = store()?;
                FaultAction::Network {
                    store,
                    instances,
                    node: node(store)?,
                    set: faults,
                }
            }
            ActionName::NetworkClear => {
                let store = store()?;
                FaultAction::NetworkClear {
                    store,
                    instances,
                    node: node(store)?,
                }
            }
            ActionName::NetworkReset => {
                let store = store()?;
                FaultAction::NetworkReset {
                    store,
                    instances,
                    node: node(store)?,
                }
            }
        };
        if let Some(lasts) = &self.lasts
            && fault_action.undo().is_none()
        {
            return Err(error(
                &lasts.span(),
                format!(
                    "`for` cannot undo {}; it applies to instance-crash, redis-pause, idp and network",
                    kebab(name)
                ),
            ));
        }
        let instances_at = self
            .instance
            .as_ref()
            .map(Spanned::span)
            .or_else(|| self.instances.as_ref().map(Spanned::span))
            .map(|span| source.position(span.start));
        Ok(ScheduledFault {
            at: at.get_ref().0,
            lasts: self.lasts.map(|l| l.into_inner().0),
            action: fault_action,
            optional: self.optional,
            origin: source.position(entry.start),
            action_at: source.position(action.span().start),
            instances_at,
        })
    }
}

/// Puts `faults[index]: ` before an error's message.
fn prefixed(error: ScenarioError, index: usize) -> ScenarioError {
    match error {
        ScenarioError::Invalid { at, message } => ScenarioError::Invalid {
            at,
            message: format!("faults[{index}]: {message}"),
        },
        other => other,
    }
}

fn kebab(name: ActionName) -> String {
    toml::Value::try_from(name)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{name:?}"))
}
