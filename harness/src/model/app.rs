//! The app under test: the reference app in one of its topologies, an app
//! the harness starts from a target file's command (a launched target), or
//! instances already running elsewhere that it only drives (a remote
//! target); and the placeholders a target file's command may use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use app::topology::{StoreNeeds, Topology};

/// How to start one instance of an app the harness did not build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    pub name: String,
    /// The program and its arguments, placeholders allowed.
    pub command: Vec<String>,
    /// Where it runs (resolved against the target file's folder).
    pub workdir: PathBuf,
    /// Run once, in `workdir`, before the first instance starts (`npm ci`).
    pub install: Option<Vec<String>>,
    /// The path that answers 2xx once an instance is ready.
    pub ready: String,
    pub stores: StoreNeeds,
    /// Environment of each instance; values may hold placeholders.
    pub env: BTreeMap<String, String>,
    pub contract: ContractSettings,
}

impl LaunchSpec {
    /// Whether the command or the environment uses placeholder `{name}`.
    pub fn takes(&self, name: &str) -> bool {
        let placeholder = format!("{{{name}}}");
        self.command
            .iter()
            .chain(self.env.values())
            .any(|part| part.contains(&placeholder))
    }
}

/// Instances running elsewhere: the harness drives and checks them only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSpec {
    pub name: String,
    /// Base URLs, one per instance (`app-1` is the first).
    pub instances: Vec<String>,
    /// The mock IdP those instances sign in with (the harness reads its
    /// counters and sets its faults).
    pub idp: String,
    pub contract: ContractSettings,
}

/// What the harness must know of an app it did not build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractSettings {
    /// The session cookie's name.
    pub session_cookie: String,
    /// How long before expiry the app renews a cached token (MSAL's own
    /// default is 300 s, fixed in MSAL Node).
    pub renewal_offset: Duration,
    /// The session idle timeout (a gap this long is an expiry, not a loss).
    pub idle_timeout: Duration,
    /// The absolute session timeout, if the app has one: a session this
    /// old ends however busy it is (a 401 past it is no loss).
    pub absolute_timeout: Option<Duration>,
    /// The reference app's topology this app implements (`option4`), so a
    /// report sets the two runs of one scenario side by side.
    pub models: Option<String>,
    /// The target file, as named to the harness (results and reports name it).
    pub file: Option<String>,
    /// What the target file says the app is: its opening comment.
    pub description: Option<String>,
}

impl Default for ContractSettings {
    fn default() -> Self {
        Self {
            session_cookie: "app_session".into(),
            renewal_offset: Duration::from_secs(300),
            idle_timeout: app::session::DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: None,
            models: None,
            file: None,
            description: None,
        }
    }
}

/// The app a run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppUnderTest {
    Reference(Topology),
    Launched(LaunchSpec),
    Remote(RemoteSpec),
}

impl AppUnderTest {
    /// The name results and reports give it.
    pub fn name(&self) -> &str {
        match self {
            AppUnderTest::Reference(topology) => &topology.name,
            AppUnderTest::Launched(spec) => &spec.name,
            AppUnderTest::Remote(spec) => &spec.name,
        }
    }

    /// The servers the harness must provide.
    pub fn needs(&self) -> StoreNeeds {
        match self {
            AppUnderTest::Reference(topology) => topology.needs(),
            AppUnderTest::Launched(spec) => spec.stores,
            AppUnderTest::Remote(_) => StoreNeeds::default(),
        }
    }

    /// The contract settings of an app the harness did not build; the
    /// reference app's follow from the run's IdP settings.
    pub fn contract(&self) -> Option<&ContractSettings> {
        match self {
            AppUnderTest::Reference(_) => None,
            AppUnderTest::Launched(spec) => Some(&spec.contract),
            AppUnderTest::Remote(spec) => Some(&spec.contract),
        }
    }

    /// The reference app's topology, when it is the reference app.
    pub fn topology(&self) -> Option<&Topology> {
        match self {
            AppUnderTest::Reference(topology) => Some(topology),
            _ => None,
        }
    }
}

/// What a fault schedule is checked against before anything starts: the
/// stores an app runs with, and whether the harness starts its instances
/// (only then can it restart or kill them).
pub trait AppShape {
    fn name(&self) -> &str;
    fn needs(&self) -> StoreNeeds;
    fn instances_are_ours(&self) -> bool;
}

impl AppShape for Topology {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs(&self) -> StoreNeeds {
        Topology::needs(self)
    }

    fn instances_are_ours(&self) -> bool {
        true
    }
}

impl AppShape for AppUnderTest {
    fn name(&self) -> &str {
        AppUnderTest::name(self)
    }

    fn needs(&self) -> StoreNeeds {
        AppUnderTest::needs(self)
    }

    fn instances_are_ours(&self) -> bool {
        !matches!(self, AppUnderTest::Remote(_))
    }
}

/// The names a target file's command and environment may use, `{name}`.
pub const PLACEHOLDERS: [&str; 17] = [
    "port",
    "instance",
    "redis_url",
    "database_url",
    "idp_issuer",
    "idp_issuer_https",
    "idp_api",
    "idp_api_https",
    "idp_ca_file",
    "client_id",
    "client_secret",
    "namespace",
    "encryption_secret",
    "run_dir",
    "session_idle_timeout_secs",
    "session_absolute_timeout_secs",
    "redis_cluster_urls",
];
