//! What the simulated browsers do: how many people and browsers, how the
//! load rises and falls, what each browser does next and how long it thinks,
//! which instance each request goes to, and the IdP's token settings.
//!
//! ```toml
//! [browsers]
//! people = 10             # distinct users
//! per_person = 2          # browsers each person has open
//!
//! [load]
//! duration = "60s"        # the steady part; or `stages = [...]`
//! ramp_up = "5s"
//! ramp_down = "5s"
//! think_time = { min = "50ms", max = "500ms" }
//! hopping = "sticky"
//!
//! [mix]                   # relative weights
//! profile = 40
//! cart_write = 20
//!
//! [idp]
//! access_token_lifetime = "30s"
//!
//! [app]
//! session_idle_timeout = "15s"  # sessions idle this long end (the app's default: 30 min)
//! session_absolute_timeout = "60s"  # sessions this old end however busy (default: 8 h)
//! restart_exited = true   # start an instance that exited by itself again (default: it stays down)
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use mock_idp::config::ReusePolicy;

use crate::model::idp::IdpOptions;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::capacity::{BROWSERS_REASON, MAX_BROWSERS, MAX_PER_PERSON};
use super::source::{ScenarioError, Source};
use super::time::Offset;

/// How long the load lasts when a file does not say.
const DEFAULT_DURATION: Duration = Duration::from_secs(20);

/// How the number of active browsers changes: each stage moves to
/// `browsers` over `over` (linearly), as goose's test plans do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub browsers: usize,
    #[serde(with = "humantime_serde")]
    pub over: Duration,
}

/// Pauses between a browser's actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ThinkTime {
    Fixed {
        #[serde(with = "humantime_serde")]
        each: Duration,
    },
    /// Uniform between the bounds.
    Uniform {
        #[serde(with = "humantime_serde")]
        min: Duration,
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
    /// Exponential with this mean (a Poisson process), capped at `max`.
    Exponential {
        #[serde(with = "humantime_serde")]
        mean: Duration,
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
}

impl ThinkTime {
    /// The longest pause it can give.
    pub fn longest(&self) -> Duration {
        match *self {
            ThinkTime::Fixed { each } => each,
            ThinkTime::Uniform { max, .. } | ThinkTime::Exponential { max, .. } => max,
        }
    }

    /// The average pause: the interval the latency correction assumes.
    pub fn mean(&self) -> Duration {
        match *self {
            ThinkTime::Fixed { each } => each,
            ThinkTime::Uniform { min, max } => (min + max) / 2,
            ThinkTime::Exponential { mean, .. } => mean,
        }
    }

    /// One pause, drawn with `unit`, a uniform number in [0, 1).
    pub fn draw(&self, unit: f64) -> Duration {
        match *self {
            ThinkTime::Fixed { each } => each,
            ThinkTime::Uniform { min, max } => min + (max - min).mul_f64(unit),
            ThinkTime::Exponential { mean, max } => mean.mul_f64(-(1.0 - unit).ln()).min(max),
        }
    }
}

/// A duration as a scenario file writes it (`50ms`, `1m 30s`).
pub fn written(duration: Duration) -> String {
    humantime_serde::re::humantime::format_duration(duration).to_string()
}

impl fmt::Display for ThinkTime {
    /// As the file writes it: `"50ms"`, `{ min = "50ms", max = "250ms" }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ThinkTime::Fixed { each } => write!(f, "\"{}\"", written(each)),
            ThinkTime::Uniform { min, max } => write!(
                f,
                "{{ min = \"{}\", max = \"{}\" }}",
                written(min),
                written(max)
            ),
            ThinkTime::Exponential { mean, max } => write!(
                f,
                "{{ mean = \"{}\", max = \"{}\" }}",
                written(mean),
                written(max)
            ),
        }
    }
}

/// Which instance a browser's requests go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hopping {
    /// Each browser stays on one instance (browsers spread over instances).
    #[default]
    Sticky,
    /// Each request goes to the next instance in turn.
    RoundRobin,
    /// Each request goes to an instance drawn at random.
    Random,
    /// Sticky, but a browser whose instance fails (no connection, 502/503/504)
    /// moves to the next one and stays there.
    StickyFailover,
}

impl fmt::Display for Hopping {
    /// As the file writes it (`sticky-failover`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hopping::Sticky => "sticky",
            Hopping::RoundRobin => "round-robin",
            Hopping::Random => "random",
            Hopping::StickyFailover => "sticky-failover",
        })
    }
}

/// What a browser can do next; the mix weighs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `GET /profile`: a cached token (or a refresh), the API.
    Profile,
    /// `GET /data/{resource}`: a token of another scope.
    Data,
    /// `POST /cart` with a new unique item.
    CartWrite,
    /// `GET /cart`.
    CartRead,
    /// Two cart writes and a data call at once, as a page loading in parallel.
    Burst,
    /// Waits until the session's access token is due for renewal, then sends
    /// at the same moment a profile call and a cart write to each of two or
    /// three different instances (as tabs of one browser behind a load
    /// balancer), then reads the cart: every instance wants the one refresh
    /// at once, and every write races the others' read-modify-write.
    Race,
    /// Nothing, for longer than an access token lives.
    Idle,
    /// Logout, then sign in again.
    Relogin,
    /// Sign in again in the same browser, without logging out.
    SignIn,
    /// The person opens another browser: a fresh cookie jar, signed in anew.
    NewBrowser,
    /// The person walks away without logging out, for good; someone new
    /// (another user) sits down at a fresh browser in their place. What the
    /// app kept for the one who left should end with their session.
    Leave,
    /// `GET /healthz` (no session involved; the cheapest request).
    Health,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::Profile,
        Action::Data,
        Action::CartWrite,
        Action::CartRead,
        Action::Burst,
        Action::Race,
        Action::Idle,
        Action::Relogin,
        Action::SignIn,
        Action::NewBrowser,
        Action::Leave,
        Action::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Profile => "profile",
            Action::Data => "data",
            Action::CartWrite => "cart_write",
            Action::CartRead => "cart_read",
            Action::Burst => "burst",
            Action::Race => "race",
            Action::Idle => "idle",
            Action::Relogin => "relogin",
            Action::SignIn => "sign_in",
            Action::NewBrowser => "new_browser",
            Action::Leave => "leave",
            Action::Health => "health",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The whole workload, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub people: NonZeroUsize,
    pub browsers_per_person: NonZeroUsize,
    pub stages: Vec<Stage>,
    pub think_time: ThinkTime,
    pub hopping: Hopping,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Relative weights, in [`Action::ALL`] order, zero where absent.
    pub mix: Vec<(Action, u32)>,
    pub idp: IdpOptions,
    /// How long after the load ends stores are checked for what logged-out
    /// browsers left behind.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
    /// The session idle timeout handed to the app (the reference app, or a
    /// target that takes `{session_idle_timeout_secs}`); absent: the app's own.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_idle_timeout: Option<Duration>,
    /// The absolute session timeout handed to the app (the reference app,
    /// or a target that takes `{session_absolute_timeout_secs}`); absent:
    /// the app's own.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_absolute_timeout: Option<Duration>,
    /// Whether an instance that exits by itself (no fault asked for it) is
    /// started again, as a process supervisor would; else it stays down.
    /// Either way the run records it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_exited: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            people: NonZeroUsize::new(10).unwrap_or(NonZeroUsize::MIN),
            browsers_per_person: NonZeroUsize::MIN,
            stages: ramp(10, None, DEFAULT_DURATION, None),
            think_time: ThinkTime::Uniform {
                min: Duration::from_millis(50),
                max: Duration::from_millis(250),
            },
            hopping: Hopping::Sticky,
            request_timeout: Duration::from_secs(10),
            mix: vec![
                (Action::Profile, 40),
                (Action::Data, 10),
                (Action::CartWrite, 20),
                (Action::CartRead, 20),
            ],
            idp: IdpOptions::default(),
            orphan_grace: Duration::from_secs(2),
            session_idle_timeout: None,
            session_absolute_timeout: None,
            restart_exited: false,
        }
    }
}

impl Workload {
    /// Every browser that can be active at once (a file's are at most
    /// [`MAX_BROWSERS`]; saturating for workloads made in code).
    pub fn browsers(&self) -> usize {
        self.people
            .get()
            .saturating_mul(self.browsers_per_person.get())
    }

    /// The most items one session's cart can reach, were every request
    /// instant: each step takes at least the shortest think time and writes
    /// at most two items (a burst). `None`: no bound (a pause can be zero).
    pub fn cart_items_bound(&self) -> Option<u64> {
        let per_step = if self.weight(Action::Burst) > 0 {
            2
        } else if self.weight(Action::CartWrite) > 0 {
            1
        } else {
            return Some(0);
        };
        let shortest = match self.think_time {
            ThinkTime::Fixed { each } => each,
            ThinkTime::Uniform { min, .. } => min,
            ThinkTime::Exponential { .. } => Duration::ZERO,
        };
        if shortest.is_zero() {
            return None;
        }
        let steps = self.duration().as_nanos() / shortest.as_nanos() + 1;
        Some(u64::try_from(steps.saturating_mul(per_step)).unwrap_or(u64::MAX))
    }

    /// The bytes of [`Self::cart_items_bound`] items as the browsers name
    /// them (`b{browser}-{n}`, a browser number of up to 10 digits, and
    /// under `bench --shard` an `s{shard}` of up to 6 bytes before it).
    pub fn cart_bytes_bound(&self) -> Option<u64> {
        self.cart_items_bound().map(|items| {
            let digits = u64::from(items.max(1).ilog10() + 1);
            items.saturating_mul(2 + 10 + 6 + digits)
        })
    }

    /// The whole run, ramps included.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.over).sum()
    }

    /// Goose's test plan: `browsers,seconds;...` (goose counts whole
    /// seconds: a stage's time is rounded up).
    pub fn test_plan(&self) -> String {
        self.stages
            .iter()
            .map(|s| format!("{},{}", s.browsers, s.over.as_millis().div_ceil(1000)))
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn weight(&self, action: Action) -> u32 {
        self.mix
            .iter()
            .find(|(a, _)| *a == action)
            .map_or(0, |(_, w)| *w)
    }
}

/// `[browsers]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrowsers {
    people: Option<Spanned<usize>>,
    per_person: Option<Spanned<usize>>,
}

/// One `stages` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    browsers: Spanned<usize>,
    over: Spanned<Offset>,
}

/// `think_time` as written: `"100ms"`, or a table of bounds.
#[derive(Debug)]
pub enum RawThink {
    Fixed(Offset),
    Bounds {
        min: Option<Offset>,
        max: Option<Offset>,
        mean: Option<Offset>,
    },
}

/// A table of think-time bounds as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounds {
    min: Option<Offset>,
    max: Option<Offset>,
    mean: Option<Offset>,
}

/// Read by hand rather than as an untagged enum, whose only error is
/// "data did not match any variant": a mistake says what to write.
impl<'de> Deserialize<'de> for RawThink {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Think;
        impl<'de> serde::de::Visitor<'de> for Think {
            type Value = RawThink;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(THINK_FORMS)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawThink, E> {
                Offset::deserialize(serde::de::value::StrDeserializer::<E>::new(text))
                    .map(RawThink::Fixed)
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<RawThink, M::Error> {
                let bounds =
                    RawBounds::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawThink::Bounds {
                    min: bounds.min,
                    max: bounds.max,
                    mean: bounds.mean,
                })
            }
        }
        deserializer.deserialize_any(Think)
    }
}

/// The forms `think_time` takes, for messages.
const THINK_FORMS: &str = "a duration (\"200ms\"), { min, max } for a uniform pause, or { mean, max } for an exponential one";

/// `[load]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    duration: Option<Spanned<Offset>>,
    ramp_up: Option<Spanned<Offset>>,
    ramp_down: Option<Spanned<Offset>>,
    stages: Option<Spanned<Vec<RawStage>>>,
    think_time: Option<Spanned<RawThink>>,
    hopping: Option<Hopping>,
    request_timeout: Option<Spanned<Offset>>,
    orphan_grace: Option<Offset>,
}

/// `[mix]` as written: a weight per action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMix {
    profile: Option<u32>,
    data: Option<u32>,
    cart_write: Option<u32>,
    cart_read: Option<u32>,
    burst: Option<u32>,
    race: Option<u32>,
    idle: Option<u32>,
    relogin: Option<u32>,
    sign_in: Option<u32>,
    new_browser: Option<u32>,
    leave: Option<u32>,
    health: Option<u32>,
}

/// `[idp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdp {
    access_token_lifetime: Option<Spanned<Offset>>,
    refresh_token_lifetime: Option<Spanned<Offset>>,
    refresh_reuse: Option<ReusePolicy>,
}

/// `[app]` as written: settings handed to the app under test.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    session_idle_timeout: Option<Spanned<Offset>>,
    session_absolute_timeout: Option<Spanned<Offset>>,
    restart_exited: Option<bool>,
}

/// The workload tables of a file, with where each stands.
#[derive(Debug, Default)]
pub struct RawWorkload {
    pub browsers: Option<Spanned<RawBrowsers>>,
    pub load: Option<Spanned<RawLoad>>,
    pub mix: Option<Spanned<RawMix>>,
    pub idp: Option<Spanned<RawIdp>>,
    pub app: Option<Spanned<RawApp>>,
}

impl RawWorkload {
    /// The workload, with defaults for what the file leaves out; every
    /// impossible value is an error at its place.
    pub fn resolve(self, source: &Source<'_>) -> Result<Workload, ScenarioError> {
        let mut workload = Workload::default();
        if let Some(browsers) = self.browsers {
            let browsers = browsers.into_inner();
            if let Some(people) = &browsers.people {
                workload.people = bounded(people, source, "people", MAX_BROWSERS, BROWSERS_REASON)?;
            }
            if let Some(per) = &browsers.per_person {
                workload.browsers_per_person = bounded(
                    per,
                    source,
                    "per_person",
                    MAX_PER_PERSON,
                    "more browsers open at once is a crowd, not a person",
                )?;
            }
            let product = workload
                .people
                .get()
                .checked_mul(workload.browsers_per_person.get())
                .filter(|&all| all <= MAX_BROWSERS);
            if product.is_none() {
                let span = browsers
                    .per_person
                    .as_ref()
                    .or(browsers.people.as_ref())
                    .map_or(0..0, Spanned::span);
                return Err(source.error(
                    &span,
                    format!(
                        "people x per_person is {} x {} browsers, above the {MAX_BROWSERS} a run may have: {BROWSERS_REASON}",
                        workload.people, workload.browsers_per_person
                    ),
                ));
            }
        }
        let all = workload.browsers();
        if let Some(load) = self.load {
            resolve_load(load.into_inner(), all, source, &mut workload)?;
        } else {
            workload.stages = ramp(all, None, DEFAULT_DURATION, None);
        }
        if let Some(mix) = self.mix {
            let span = mix.span();
            workload.mix = resolve_mix(mix.into_inner());
            if workload.mix.iter().all(|(_, w)| *w == 0) {
                return Err(source.error(
                    &span,
                    "[mix]: every weight is zero: the browsers would do nothing",
                ));
            }
        }
        if let Some(idp) = self.idp {
            let idp = idp.into_inner();
            if let Some(at) = idp.access_token_lifetime {
                workload.idp.access_token_lifetime =
                    at_least(&at, Duration::from_secs(2), source, "access_token_lifetime")?;
            }
            if let Some(rt) = idp.refresh_token_lifetime {
                workload.idp.refresh_token_lifetime = at_least(
                    &rt,
                    Duration::from_secs(2),
                    source,
                    "refresh_token_lifetime",
                )?;
            }
            if let Some(policy) = idp.refresh_reuse {
                workload.idp.refresh_reuse = policy;
            }
        }
        let app = self.app.map(Spanned::into_inner).unwrap_or_default();
        if let Some(idle) = app.session_idle_timeout {
            workload.session_idle_timeout =
                Some(whole_seconds(&idle, source, "session_idle_timeout")?);
        }
        if let Some(absolute) = app.session_absolute_timeout {
            let seconds = whole_seconds(&absolute, source, "session_absolute_timeout")?;
            let idle = workload
                .session_idle_timeout
                .unwrap_or(app::session::DEFAULT_IDLE_TIMEOUT);
            if seconds < idle {
                return Err(source.error(
                    &absolute.span(),
                    format!(
                        "`session_absolute_timeout` ({seconds:?}) is shorter than the session idle timeout ({idle:?}{}): apps refuse an absolute timeout below the idle one",
                        if workload.session_idle_timeout.is_none() {
                            ", the reference app's default; set `session_idle_timeout` too"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            workload.session_absolute_timeout = Some(seconds);
        }
        workload.restart_exited = app.restart_exited.unwrap_or(false);
        Ok(workload)
    }
}

/// A session timeout as the apps take it: whole seconds, at least one.
fn whole_seconds(
    value: &Spanned<Offset>,
    source: &Source<'_>,
    name: &str,
) -> Result<Duration, ScenarioError> {
    if value.get_ref().0 < Duration::from_secs(1) {
        return Err(source.error(
            &value.span(),
            format!("`{name}` must be at least 1s (apps count it in whole seconds)"),
        ));
    }
    Ok(Duration::from_secs(value.get_ref().0.as_secs()))
}

fn resolve_load(
    load: RawLoad,
    browsers: usize,
    source: &Source<'_>,
    workload: &mut Workload,
) -> Result<(), ScenarioError> {
    let positive = |value: &Spanned<Offset>, name: &str| {
        if value.get_ref().0.is_zero() {
            Err(source.error(&value.span(), format!("`{name}` must be longer than zero")))
        } else {
            Ok(value.get_ref().0)
        }
    };
    match (&load.stages, &load.duration) {
        (Some(_), Some(duration)) => {
            return Err(source.error(
                &duration.span(),
                "give either `duration` (with ramps) or `stages`, not both",
            ));
        }
        (Some(stages), None) => {
            for name in [("ramp_up", &load.ramp_up), ("ramp_down", &load.ramp_down)] {
                if let Some(value) = name.1 {
                    return Err(source.error(
                        &value.span(),
                        format!(
                            "`{}` goes with `duration`; `stages` say the ramps themselves",
                            name.0
                        ),
                    ));
                }
            }
            let mut resolved = Vec::new();
            for stage in stages.get_ref() {
                if *stage.browsers.get_ref() > browsers {
                    return Err(source.error(
                        &stage.browsers.span(),
                        format!(
                            "a stage asks for {} browsers; [browsers] has {browsers} (people x per_person)",
                            stage.browsers.get_ref()
                        ),
                    ));
                }
                resolved.push(Stage {
                    browsers: *stage.browsers.get_ref(),
                    over: stage.over.get_ref().0,
                });
            }
            if resolved.is_empty() || resolved.iter().all(|s| s.over.is_zero()) {
                return Err(source.error(&stages.span(), "`stages` must last longer than zero"));
            }
            workload.stages = resolved;
        }
        (None, duration) => {
            let duration = match duration {
                Some(d) => positive(d, "duration")?,
                None => DEFAULT_DURATION,
            };
            workload.stages = ramp(
                browsers,
                load.ramp_up.map(|r| r.into_inner().0),
                duration,
                load.ramp_down.map(|r| r.into_inner().0),
            );
        }
    }
    if let Some(think) = &load.think_time {
        workload.think_time = think_time(think, source)?;
        let run = workload.duration();
        if workload.think_time.longest() >= run {
            return Err(source.error(
                &think.span(),
                format!(
                    "think time up to {} is longer than the whole run ({})",
                    written(workload.think_time.longest()),
                    written(run)
                ),
            ));
        }
    }
    if let Some(hopping) = load.hopping {
        workload.hopping = hopping;
    }
    if let Some(timeout) = &load.request_timeout {
        workload.request_timeout = positive(timeout, "request_timeout")?;
    }
    if let Some(grace) = load.orphan_grace {
        workload.orphan_grace = grace.0;
    }
    Ok(())
}

/// Up to every browser over `up`, steady for `steady`, down to none over `down`.
fn ramp(
    browsers: usize,
    up: Option<Duration>,
    steady: Duration,
    down: Option<Duration>,
) -> Vec<Stage> {
    let mut stages = vec![Stage {
        browsers,
        over: up.unwrap_or_default(),
    }];
    stages.push(Stage {
        browsers,
        over: steady,
    });
    stages.push(Stage {
        browsers: 0,
        over: down.unwrap_or_default(),
    });
    stages
}

fn think_time(think: &Spanned<RawThink>, source: &Source<'_>) -> Result<ThinkTime, ScenarioError> {
    let bad = |why: &str| Err(source.error(&think.span(), format!("think_time: {why}")));
    match think.get_ref() {
        RawThink::Fixed(each) => Ok(ThinkTime::Fixed { each: each.0 }),
        RawThink::Bounds {
            min: Some(min),
            max: Some(max),
            mean: None,
        } => {
            if min > max {
                return bad("`min` is above `max`");
            }
            Ok(ThinkTime::Uniform {
                min: min.0,
                max: max.0,
            })
        }
        RawThink::Bounds {
            min: None,
            max: Some(max),
            mean: Some(mean),
        } => {
            if mean.0.is_zero() || mean > max {
                return bad("`mean` must be above zero and at most `max`");
            }
            Ok(ThinkTime::Exponential {
                mean: mean.0,
                max: max.0,
            })
        }
        RawThink::Bounds { .. } => bad(&format!("write {THINK_FORMS}")),
    }
}

fn resolve_mix(mix: RawMix) -> Vec<(Action, u32)> {
    let weights = [
        (Action::Profile, mix.profile),
        (Action::Data, mix.data),
        (Action::CartWrite, mix.cart_write),
        (Action::CartRead, mix.cart_read),
        (Action::Burst, mix.burst),
        (Action::Race, mix.race),
        (Action::Idle, mix.idle),
        (Action::Relogin, mix.relogin),
        (Action::SignIn, mix.sign_in),
        (Action::NewBrowser, mix.new_browser),
        (Action::Leave, mix.leave),
        (Action::Health, mix.health),
    ];
    weights
        .into_iter()
        .map(|(action, weight)| (action, weight.unwrap_or(0)))
        .filter(|(_, weight)| *weight > 0)
        .collect()
}

/// A count of at least 1 and at most `most` (`why`: the bound's reason).
fn bounded(
    value: &Spanned<usize>,
    source: &Source<'_>,
    name: &str,
    most: usize,
    why: &str,
) -> Result<NonZeroUsize, ScenarioError> {
    let count = NonZeroUsize::new(*value.get_ref())
        .ok_or_else(|| source.error(&value.span(), format!("`{name}` must be at least 1")))?;
    if count.get() > most {
        return Err(source.error(
            &value.span(),
            format!("`{name}` is {count}, above the {most} a run may have: {why}"),
        ));
    }
    Ok(count)
}

fn at_least(
    value: &Spanned<Offset>,
    floor: Duration,
    source: &Source<'_>,
    name: &str,
) -> Result<Duration, ScenarioError> {
    let duration = value.get_ref().0;
    if duration < floor {
        return Err(source.error(
            &value.span(),
            format!(
                "`{name}` must be at least {} (tokens are stamped in whole seconds)",
                written(floor)
            ),
        ));
    }
    Ok(duration)
}

/// A person's user name, as `login_hint` gives it to the IdP.
pub fn person_name(person: usize) -> String {
    format!("person-{person}")
}
