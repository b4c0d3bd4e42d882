//! Scenario files: what a run does, as written. Reading one is pure (no
//! stack, no I/O beyond the file), and every mistake is reported at its
//! `file:line:column` before anything starts.
//!
//! # Layout
//! - [`source`]: the one guarded reader of every file the harness reads, offsets to positions, the error type.
//! - [`names`]: names that become part of file names, checked or made safe.
//! - [`capacity`]: bounds on browsers and instances, and the memory a run needs.
//! - [`time`]: durations as written (`"5s"`), bounded.
//! - [`workload`]: browsers, load shape, think time, the mix, hopping, IdP settings.
//! - [`faults`]: the `[[faults]]` schedule and its check against a topology.
//! - [`target`]: target files: apps the harness did not build.
//!
//! A file, every key optional:
//!
//! ```toml
//! # What this scenario is for.
//! topology = "option4"     # a preset, or a table as `--topology-file` takes
//! instances = 2
//! seed = 7                 # the same file makes the same choices
//! fault_shard = 1          # under `bench --shard I/N`, the one shard that applies the faults
//! [browsers]               # see `workload`
//! [load]
//! [mix]
//! [idp]
//! [app]
//! [[faults]]               # see `faults`
//! ```

pub mod capacity;
pub mod describe;
pub mod faults;
pub mod names;
pub mod source;
pub mod target;
pub mod time;
pub mod workload;

use std::num::NonZeroUsize;
use std::path::Path;

use app::topology::Topology;
use serde::Deserialize;
use toml::Spanned;

use self::capacity::{INSTANCES_REASON, MAX_INSTANCES};
use self::faults::{FaultSchedule, RawFault};
use self::source::Source;
pub use self::source::{Position, ScenarioError};
use self::workload::{RawApp, RawBrowsers, RawIdp, RawLoad, RawMix, RawWorkload, Workload};

/// A scenario file, read and valid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scenario {
    /// The topology the file names, if it names one.
    pub topology: Option<Topology>,
    /// The instances the file asks for, if it says.
    pub instances: Option<NonZeroUsize>,
    /// Seeds every browser's choices, so a file makes the same choices each run.
    pub seed: u64,
    pub workload: Workload,
    pub faults: FaultSchedule,
    /// Under `bench --shard`, the shard that applies the faults (default 1),
    /// and where the file says so.
    pub fault_shard: Option<(u32, Position)>,
}

impl Scenario {
    /// The shard that applies the faults: the file's `fault_shard`, else 1.
    pub fn fault_shard(&self) -> u32 {
        self.fault_shard.as_ref().map_or(1, |(shard, _)| *shard)
    }
}

/// The file as written, every entry with its place.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    /// `"option4"`, or a custom combination's table.
    topology: Option<Spanned<toml::Value>>,
    instances: Option<Spanned<usize>>,
    seed: Option<u64>,
    fault_shard: Option<Spanned<u32>>,
    browsers: Option<Spanned<RawBrowsers>>,
    load: Option<Spanned<RawLoad>>,
    mix: Option<Spanned<RawMix>>,
    idp: Option<Spanned<RawIdp>>,
    app: Option<Spanned<RawApp>>,
    #[serde(default, deserialize_with = "fault_list")]
    faults: Vec<Spanned<RawFault>>,
}

/// `[[faults]]` entries; `[faults]` (one table) is refused with what to write.
fn fault_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Spanned<RawFault>>, D::Error> {
    struct Faults;
    impl<'de> serde::de::Visitor<'de> for Faults {
        type Value = Vec<Spanned<RawFault>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("`[[faults]]` entries (an array of tables)")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut faults = Vec::new();
            while let Some(fault) = seq.next_element()? {
                faults.push(fault);
            }
            Ok(faults)
        }

        fn visit_map<M: serde::de::MapAccess<'de>>(self, _: M) -> Result<Self::Value, M::Error> {
            Err(serde::de::Error::custom(
                "`[faults]` is one table; write each fault as `[[faults]]` (double brackets), one per fault",
            ))
        }
    }
    deserializer.deserialize_seq(Faults)
}

/// The app instances a run has when neither the command line nor the
/// scenario says: the one default of every subcommand.
pub const DEFAULT_INSTANCES: NonZeroUsize = NonZeroUsize::new(2).expect("2 is not zero");

/// How many instances a run has: a remote target's own count, else the
/// command line's, else the scenario's, else [`DEFAULT_INSTANCES`]. Every
/// subcommand resolves it here, so `check` says what `bench` will do.
pub fn instances(
    remote: Option<NonZeroUsize>,
    flag: Option<NonZeroUsize>,
    scenario: &Scenario,
) -> NonZeroUsize {
    remote
        .or(flag)
        .or(scenario.instances)
        .unwrap_or(DEFAULT_INSTANCES)
}

/// Reads `--instances` from the command line, bounded as files are.
pub fn parse_instances(text: &str) -> Result<NonZeroUsize, String> {
    let count: NonZeroUsize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a count of at least 1"))?;
    if count.get() > MAX_INSTANCES {
        return Err(format!(
            "{count} instances is above the {MAX_INSTANCES} a run may have: {INSTANCES_REASON}"
        ));
    }
    Ok(count)
}

/// A `--topology-file`, read as scenario files are (the guarded reader,
/// errors at `file:line:column`), its name checked.
pub fn topology_from_file(path: &Path) -> Result<Topology, ScenarioError> {
    let text = source::read(path)?;
    parse_topology(&text, &path.display().to_string())
}

/// Reads `text` as the topology file `name`.
pub fn parse_topology(text: &str, name: &str) -> Result<Topology, ScenarioError> {
    let source = Source::new(text, name);
    let topology: Topology = toml::from_str(text).map_err(|e| source.toml_error(&e, 0, &(0..0)))?;
    let named: NameOnly = toml::from_str(text).map_err(|e| source.toml_error(&e, 0, &(0..0)))?;
    names::check(named.name.get_ref()).map_err(|why| source.error(&named.name.span(), why))?;
    Ok(topology)
}

/// A file's `name` and where it stands (other keys are read elsewhere).
#[derive(Deserialize)]
struct NameOnly {
    name: Spanned<String>,
}

impl Scenario {
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = source::read(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The scenario `bench` runs when none is given: scenarios/smoke.toml,
    /// built into the binary.
    pub fn built_in_smoke() -> Result<Self, ScenarioError> {
        Self::parse(
            include_str!("../../../scenarios/smoke.toml"),
            "scenarios/smoke.toml (built in)",
        )
    }

    /// Reads `text`; errors point at `name:line:column`.
    pub fn parse(text: &str, name: &str) -> Result<Self, ScenarioError> {
        let source = Source::new(text, name);
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| source.toml_error(&e, 0, &(0..0)))?;
        let topology = match raw.topology {
            None => None,
            Some(topology) => {
                let span = topology.span();
                Some(match topology.into_inner() {
                    toml::Value::String(name) => {
                        Topology::named(&name).map_err(|e| source.error(&span, e.to_string()))?
                    }
                    custom => {
                        let topology = source.value::<Topology>(&span, custom)?;
                        names::check(&topology.name)
                            .map_err(|why| source.error(&span, format!("topology: {why}")))?;
                        topology
                    }
                })
            }
        };
        let instances = match raw.instances {
            None => None,
            Some(count) => {
                let at_least_one = NonZeroUsize::new(*count.get_ref())
                    .ok_or_else(|| source.error(&count.span(), "`instances` must be at least 1"))?;
                if at_least_one.get() > MAX_INSTANCES {
                    return Err(source.error(
                        &count.span(),
                        format!(
                            "`instances` is {at_least_one}, above the {MAX_INSTANCES} a run may have: {INSTANCES_REASON}"
                        ),
                    ));
                }
                Some(at_least_one)
            }
        };
        let fault_shard = match raw.fault_shard {
            None => None,
            Some(shard) if *shard.get_ref() == 0 => {
                return Err(source.error(
                    &shard.span(),
                    "`fault_shard` counts from 1: the shard (of `bench --shard I/N`) that applies the faults",
                ));
            }
            Some(shard) => Some((*shard.get_ref(), source.position(shard.span().start))),
        };
        let workload = RawWorkload {
            browsers: raw.browsers,
            load: raw.load,
            mix: raw.mix,
            idp: raw.idp,
            app: raw.app,
        }
        .resolve(&source)?;
        let faults = raw
            .faults
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let span = entry.span();
                entry.into_inner().resolve(&span, index, &source)
            })
            .collect::<Result<_, _>>()?;
        let scenario = Self {
            topology,
            instances,
            seed: raw.seed.unwrap_or(0),
            workload,
            faults: FaultSchedule { faults },
            fault_shard,
        };
        if let Some(instances) = scenario.instances {
            scenario.faults.check_instances(instances)?;
        }
        if let Some(topology) = &scenario.topology {
            scenario.faults.check_stores(topology)?;
        }
        Ok(scenario)
    }

    /// Refuses what the stack will not have (an instance beyond the count,
    /// a store the app runs without, an instance fault on instances the
    /// harness did not start).
    pub fn check(
        &self,
        app: &impl crate::model::app::AppShape,
        instances: NonZeroUsize,
    ) -> Result<(), ScenarioError> {
        self.faults.check(app, instances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::InstanceId;

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
        Scenario::parse(text, "s.toml")
            .expect_err("invalid")
            .to_string()
    }

    fn three() -> NonZeroUsize {
        NonZeroUsize::new(3).expect("3")
    }

    #[test]
    fn a_schedule_parses_and_orders_its_steps_with_their_undos() {
        let scenario = Scenario::parse(EXAMPLE, "s.toml").expect("parses");
        let schedule = &scenario.faults;
        assert_eq!(schedule.faults.len(), 4);
        assert_eq!(schedule.faults[0].origin.to_string(), "s.toml:2:1");
        assert_eq!(
            schedule.faults[3].action,
            faults::FaultAction::InstanceCrash {
                id: InstanceId::from_index(2),
                stay_down: false
            }
        );
        assert!(schedule.needs_network_proxy());
        let steps: Vec<String> = schedule
            .steps()
            .iter()
            .map(|step| format!("{}ms {}", step.at.as_millis(), step.action))
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
        let ends: Vec<Option<usize>> = schedule.steps().iter().map(|s| s.ends).collect();
        assert_eq!(ends, [None, None, Some(1), None, Some(0), None]);
    }

    #[test]
    fn errors_point_at_the_value_that_is_wrong() {
        let unknown = error("[[faults]]\nat = \"1s\"\naction = \"redis-pase\"\n");
        assert!(unknown.starts_with("s.toml:3:10: "), "{unknown}");
        assert!(
            unknown.contains("redis-pause"),
            "lists the names: {unknown}"
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
        // A bad value deep in an entry is reported where it stands, not at `[[faults]]`.
        let deep = error(
            "[[faults]]\nat = \"1s\"\naction = \"network\"\nstore = \"redis\"\n\n\n\nset = { latency = \"50ms\", jitter = 5 }\n",
        );
        assert!(deep.starts_with("s.toml:8:36: "), "{deep}");
        let idp = error(
            "[[faults]]\nat = \"1s\"\naction = \"idp\"\nset = { errors = { rate = 2.0, status = 503 } }\n",
        );
        assert!(
            idp.starts_with("s.toml:4:7: ") && idp.contains("rate"),
            "{idp}"
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_reason_at_its_place() {
        // (entry after `[[faults]]\n`, where the error points, what it says)
        let cases = [
            ("at = \"soon\"\naction = \"redis-flush\"", "2:6", "\"soon\""),
            ("at = 5\naction = \"redis-flush\"", "2:6", "duration string"),
            (
                "at = \"10000000000000000000s\"\naction = \"redis-flush\"",
                "2:6",
                "30 days",
            ),
            (
                "at = \"1s\"\naction = \"redis-pause\"\nfor = \"18446744073709551615s\"",
                "4:7",
                "30 days",
            ),
            (
                "at = \"1s\"\naction = \"redis-flush\"\nfor = \"1s\"",
                "4:7",
                "`for` cannot undo redis-flush",
            ),
            (
                "at = \"1s\"\naction = \"instance-restart\"\ninstance = 0",
                "4:12",
                "numbered from 1",
            ),
            (
                "at = \"1s\"\naction = \"instance-restart\"",
                "1:1",
                "`instance` is missing",
            ),
            (
                "at = \"1s\"\naction = \"redis-flush\"\nstore = \"redis\"",
                "4:9",
                "`store` does not apply to redis-flush",
            ),
            (
                "at = \"1s\"\naction = \"instance-crash\"\ninstance = 1\nsignal = 9",
                "5:1",
                "signal",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"redis\"\nset = {}",
                "5:7",
                "names no fault",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"mysql\"\nset = { blackhole = true }",
                "4:9",
                "mysql",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"redis\"\nset = { latency = \"2h\" }",
                "5:7",
                "at most",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"redis-cluster\"\nnode = 7\nset = { blackhole = true }",
                "5:8",
                "there is no node 7: a private Redis Cluster has nodes 1 to 6",
            ),
            (
                "at = \"1s\"\naction = \"network-clear\"\nstore = \"redis-cluster\"\nnode = 0",
                "5:8",
                "there is no node 0",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"redis\"\nnode = 1\nset = { blackhole = true }",
                "5:8",
                "`node` aims at one node of a Redis Cluster",
            ),
            (
                "at = \"1s\"\naction = \"network\"\nstore = \"redis-cluster\"\ninstances = [1]\nset = { blackhole = true }",
                "5:13",
                "`instances` does not apply to a Redis Cluster",
            ),
            (
                "at = \"1s\"\naction = \"redis-pause\"\nnode = 1",
                "4:8",
                "`node` does not apply to redis-pause",
            ),
            (
                "at = \"1s\"\naction = \"idp\"\nset = { outage = { endpoints = [\"tokne\"] } }",
                "4:33",
                "tokne",
            ),
            (
                "at = \"1s\"\naction = \"idp\"\nset = {}",
                "4:7",
                "names no fault",
            ),
            (
                "at = \"1s\"\naction = \"idp\"\nset = { errors = { rate = nan, status = 503 } }",
                "4:7",
                "rate",
            ),
            (
                "at = \"1s\"\naction = \"idp\"\nset = { errors = { rate = 0.5, status = 200 } }",
                "4:7",
                "status",
            ),
        ];
        for (entry, place, expected) in cases {
            let message = error(&format!("[[faults]]\n{entry}\n"));
            assert!(
                message.starts_with(&format!("s.toml:{place}: ")),
                "{entry:?} -> {message}"
            );
            assert!(message.contains(expected), "{entry:?} -> {message}");
        }
    }

    #[test]
    fn check_refuses_targets_the_topology_does_not_have() {
        let scenario = Scenario::parse(EXAMPLE, "s.toml").expect("parses");
        let option4 = Topology::named("option4").expect("preset");
        scenario.check(&option4, three()).expect("all there");
        let few = scenario
            .check(&option4, NonZeroUsize::new(2).expect("2"))
            .expect_err("no app-3")
            .to_string();
        assert!(
            few.starts_with("s.toml:23:12:") && few.contains("no app-3"),
            "{few}"
        );
        let no_redis = scenario
            .check(&Topology::named("option2").expect("preset"), three())
            .expect_err("no redis")
            .to_string();
        assert!(
            no_redis.starts_with("s.toml:4:10:")
                && no_redis.contains("redis-pause")
                && no_redis.contains("option2"),
            "{no_redis}"
        );
    }

    #[test]
    fn a_fault_aimed_at_a_cluster_node_needs_a_cluster() {
        let scenario = Scenario::parse(
            "[[faults]]\nat = \"1s\"\naction = \"network\"\nstore = \"redis-cluster\"\nnode = 2\n\
             set = { latency = \"100ms\" }\nfor = \"2s\"\n",
            "s.toml",
        )
        .expect("parses");
        let steps: Vec<String> = scenario
            .faults
            .steps()
            .iter()
            .map(|s| s.action.to_string())
            .collect();
        assert_eq!(
            steps,
            [
                "network redis-cluster node 2: latency 100ms",
                "network-clear redis-cluster node 2"
            ]
        );
        assert!(scenario.faults.needs_network_proxy());
        scenario
            .check(
                &Topology::named("option4-cluster").expect("preset"),
                three(),
            )
            .expect("a cluster has nodes");
        let option4 = scenario
            .check(&Topology::named("option4").expect("preset"), three())
            .expect_err("no cluster")
            .to_string();
        assert!(
            option4.starts_with("s.toml:3:10:")
                && option4.contains("option4 runs without that store (redis-cluster"),
            "{option4}"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_scenario() {
        assert_eq!(
            Scenario::parse("", "s.toml").expect("parses"),
            Scenario::default()
        );
    }
}
