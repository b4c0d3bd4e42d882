//! What a command deploys: the apps (the reference app in topologies, or
//! targets) and how many instances of each, from the command line's choice,
//! else the scenario's, else the defaults (option4, and
//! [`DEFAULT_INSTANCES`](crate::scenario::DEFAULT_INSTANCES)). `bench`, `up`
//! and `validate` all resolve here, so they cannot disagree.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use app::topology::Topology;

use crate::host::fits_this_machine;
use crate::model::app::AppUnderTest;
use crate::scenario::describe::memory_needed;
use crate::scenario::{self, Scenario, target};

/// The topology every command falls back to.
const DEFAULT_TOPOLOGY: &str = "option4";

/// What the command line asked for; every part may be absent.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    /// A preset's name (`option2`), or `all` where several apps may run.
    pub topology: Option<String>,
    /// A custom topology file instead of a preset.
    pub topology_file: Option<PathBuf>,
    /// Target files, run after the reference app's topologies.
    pub targets: Vec<PathBuf>,
    /// `--instances`.
    pub instances: Option<NonZeroUsize>,
    /// Whether `all` means the four presets (`bench`); elsewhere it is a
    /// topology name like any other (and no preset has it).
    pub all_allowed: bool,
}

/// The apps to run, in order, and the instances each runs with.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub apps: Vec<AppUnderTest>,
    pub instances: NonZeroUsize,
}

impl Choice {
    /// The apps, in order: the reference app's topologies (the preset or
    /// `all`, a topology file, else the scenario's, else option4, unless
    /// only targets are named), then each target file; and the instances:
    /// a remote target's own count, else `--instances`, else the
    /// scenario's, else the default.
    pub fn resolve(&self, scenario: &Scenario) -> anyhow::Result<Deployment> {
        let apps = self.apps(scenario.topology.as_ref())?;
        let instances = scenario::instances(
            apps.iter().find_map(remote_instances),
            self.instances,
            scenario,
        );
        Ok(Deployment { apps, instances })
    }

    fn apps(&self, scenario_topology: Option<&Topology>) -> anyhow::Result<Vec<AppUnderTest>> {
        let topologies = match (self.topology.as_deref(), &self.topology_file) {
            (_, Some(path)) => vec![scenario::topology_from_file(path)?],
            (Some("all"), None) if self.all_allowed => Topology::PRESETS
                .iter()
                .map(|name| Topology::named(name))
                .collect::<Result<_, _>>()?,
            (Some(name), None) => vec![Topology::named(name)?],
            (None, None) if !self.targets.is_empty() => Vec::new(),
            (None, None) => vec![match scenario_topology {
                Some(topology) => topology.clone(),
                None => Topology::named(DEFAULT_TOPOLOGY)?,
            }],
        };
        let mut apps: Vec<AppUnderTest> = topologies
            .into_iter()
            .map(AppUnderTest::Reference)
            .collect();
        for path in &self.targets {
            apps.push(target::from_file(path)?);
        }
        Ok(apps)
    }
}

impl Deployment {
    /// Refuses, before anything starts, a scenario whose faults do not fit
    /// an app (a store it runs without, an instance it does not have), or
    /// a run this machine has too little memory for.
    pub fn check(&self, scenario: &Scenario) -> anyhow::Result<()> {
        for app in &self.apps {
            scenario.check(app, self.instances)?;
            fits_this_machine(memory_needed(scenario, app, self.instances))?;
        }
        Ok(())
    }

    /// The one app of a command that runs one (`up`, `validate`): the
    /// command line lets it name one topology or one target only.
    pub fn single(mut self) -> (AppUnderTest, NonZeroUsize) {
        assert_eq!(self.apps.len(), 1, "one app asked for");
        (self.apps.remove(0), self.instances)
    }
}

/// A remote target has as many instances as it names.
fn remote_instances(app: &AppUnderTest) -> Option<NonZeroUsize> {
    match app {
        AppUnderTest::Remote(remote) => NonZeroUsize::new(remote.instances.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(choice: Choice, scenario: &Scenario) -> anyhow::Result<Vec<String>> {
        Ok(choice
            .resolve(scenario)?
            .apps
            .iter()
            .map(|app| app.name().to_owned())
            .collect())
    }

    fn bench(topology: Option<&str>, targets: Vec<PathBuf>) -> Choice {
        Choice {
            topology: topology.map(str::to_owned),
            targets,
            all_allowed: true,
            ..Choice::default()
        }
    }

    #[test]
    fn bench_runs_the_reference_options_first_then_each_target() {
        let express = |n: u8| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../targets/express-msal/option{n}.toml"))
        };
        let none = Scenario::default();
        let both = names(bench(Some("all"), vec![express(1), express(4)]), &none).expect("valid");
        assert_eq!(
            both,
            [
                "option1",
                "option2",
                "option3",
                "option4",
                "express-msal-option1",
                "express-msal-option4"
            ]
        );
        let one = names(bench(Some("option2"), vec![express(2)]), &none).expect("valid");
        assert_eq!(one, ["option2", "express-msal-option2"]);
        let only = names(bench(None, vec![express(3)]), &none).expect("valid");
        assert_eq!(
            only,
            ["express-msal-option3"],
            "no reference run unless asked"
        );
        let default = names(bench(None, Vec::new()), &none).expect("valid");
        assert_eq!(default, ["option4"]);
        let scenario = Scenario {
            topology: Some(Topology::named("option3").expect("preset")),
            ..Scenario::default()
        };
        let from_scenario = names(bench(None, Vec::new()), &scenario).expect("valid");
        assert_eq!(from_scenario, ["option3"]);
        assert!(names(bench(Some("option9"), Vec::new()), &none).is_err());
    }

    #[test]
    fn all_names_the_presets_only_where_several_apps_may_run() {
        let one = Choice {
            topology: Some("all".into()),
            ..Choice::default()
        };
        assert!(one.resolve(&Scenario::default()).is_err());
    }

    #[test]
    fn the_default_instance_count_is_the_scenarios_else_two() {
        let none = Scenario::default();
        let default = bench(None, Vec::new()).resolve(&none).expect("valid");
        assert_eq!(default.instances, scenario::DEFAULT_INSTANCES);
        let three = NonZeroUsize::new(3).expect("not zero");
        let scenario = Scenario {
            instances: Some(three),
            ..Scenario::default()
        };
        assert_eq!(
            bench(None, Vec::new())
                .resolve(&scenario)
                .expect("valid")
                .instances,
            three
        );
    }
}
