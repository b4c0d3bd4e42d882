//! One simulated browser: a person's cookie jar, its choices (drawn from its
//! own seeded generator, so a scenario file makes the same choices every
//! run), and its requests, each timed and written to the history.

use std::sync::Arc;
use std::time::Duration;

use contract::{Answer, Browser, BrowserError, Outcome as Body};
use rand::Rng;
use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::hopping::Hop;
use super::labels::Labels;
use super::latency::Latencies;
use crate::history::{
    BrowserId, BrowserInfo, Event, NoAnswer, Observed, Outcome, Recorder, Request,
};
use crate::scenario::workload::{Action, Workload, person_name};
use crate::shard::{self, Shard};

/// Resources `/data/{resource}` is asked for; the app spreads them over
/// scope sets, each another token per session.
const RESOURCES: [&str; 6] = [
    "reports", "orders", "invoices", "photos", "messages", "calendar",
];

/// How long after a logout a browser replays its old session cookie: a
/// random while in this range (long enough for a store copy that a delete
/// missed, or an instance's own cache, to be what answers).
const REPLAY_AFTER: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How many of the items in a cart that are not a browser's own the history names.
const OTHERS_NAMED: usize = 8;

/// An app instance the browsers can reach.
#[derive(Clone, Debug)]
pub struct InstanceUrl {
    /// `app-1`, as the stack names it.
    pub id: String,
    pub base: String,
}

/// What every browser of a run shares.
pub struct Shared {
    pub instances: Vec<InstanceUrl>,
    /// The IdP's base URL (its session cookie tells a browser's IdP session).
    pub idp_base: String,
    /// The app's session cookie (`app_session` for the reference app).
    pub session_cookie: String,
    pub http: contract::HttpClient,
    pub recorder: Recorder,
    pub latencies: Arc<Latencies>,
    pub workload: Workload,
    pub seed: u64,
    /// The run's start: every time in the history counts from it.
    pub start: Instant,
    /// Cookies and token ids go into the history as labels only.
    pub labels: Arc<Labels>,
    /// How long before its expiry the app renews an access token (the
    /// reference app's flag, or a target's file): when a race's refresh is due.
    pub renewal_offset: Duration,
    /// Under `--shard I/N`: the slice, and the single run's browser numbers
    /// (slots) it runs, in the order goose starts its users.
    shard: Option<(Shard, Vec<usize>)>,
    mix: WeightedIndex<u32>,
    actions: Vec<Action>,
}

/// What the browsers of a run share, named: where they go, what they record
/// into, what they do, and when the run began.
pub struct SharedSpec {
    /// The instances, in order (`app-1` first).
    pub instances: Vec<InstanceUrl>,
    /// The IdP as the browsers reach it.
    pub idp_base: String,
    /// The app's session cookie name.
    pub session_cookie: String,
    /// Where the history goes.
    pub recorder: Recorder,
    /// Where every request's latency goes.
    pub latencies: Arc<Latencies>,
    pub workload: Workload,
    /// Seeds every browser's choices.
    pub seed: u64,
    /// The load's start: every history time counts from it.
    pub start: Instant,
}

impl Shared {
    /// The browsers' shared state for `spec`; the mix must have a weight.
    pub fn new(spec: SharedSpec) -> Result<Self, String> {
        let SharedSpec {
            instances,
            idp_base,
            session_cookie,
            recorder,
            latencies,
            workload,
            seed,
            start,
        } = spec;
        let actions: Vec<Action> = workload.mix.iter().map(|(a, _)| *a).collect();
        let mix = WeightedIndex::new(workload.mix.iter().map(|(_, w)| *w))
            .map_err(|e| format!("the mix has no weight: {e}"))?;
        Ok(Self {
            instances,
            idp_base,
            session_cookie,
            http: contract::HttpClient::new(),
            recorder,
            latencies,
            renewal_offset: workload.idp.renewal_offset(),
            workload,
            seed,
            start,
            labels: Arc::new(Labels::new()),
            shard: None,
            mix,
            actions,
        })
    }

    fn elapsed(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Runs only `shard`'s slice of the browsers.
    pub fn set_shard(&mut self, shard: Shard) {
        self.shard = Some((shard, shard.slots(&self.workload)));
    }

    /// Goose's test plan: the workload's, or the shard's part of it.
    pub fn test_plan(&self) -> String {
        match &self.shard {
            Some((shard, _)) => shard.test_plan(&self.workload),
            None => self.workload.test_plan(),
        }
    }

    /// The single run's browser number of goose user `user`.
    fn slot(&self, user: usize) -> usize {
        match &self.shard {
            Some((_, slots)) => shard::slot_of(slots, self.workload.browsers(), user),
            None => user,
        }
    }

    /// What this process's browsers put before their cart items' numbers
    /// besides `b7-`: under a shard, `s2` (browser ids are per process, so
    /// `b7` alone would name a browser in each shard).
    fn item_prefix(&self) -> String {
        match &self.shard {
            Some((shard, _)) => format!("s{}", shard.index),
            None => String::new(),
        }
    }
}

/// A browser as the driver runs it.
#[derive(Clone)]
pub struct SimBrowser {
    pub id: BrowserId,
    person: usize,
    user: String,
    browser: Browser,
    rng: StdRng,
    hop: Hop,
    /// Which of its person's browsers it is (goose user number), for seeds.
    slot: usize,
    generation: u64,
    /// How many people left this seat so far (each newcomer is a new user).
    departures: usize,
    next_item: u32,
    /// Whether the next action must be a sign-in first.
    signed_out: bool,
    /// When (Unix seconds) the session's `/profile` token is due for
    /// renewal, as far as its answers tell: a race waits for it.
    profile_due: Option<f64>,
    /// A session cookie held before a logout (the earliest not yet sent
    /// again), to be sent once more when the instant comes: (browser that
    /// held it, cookie, when, instance).
    /// The instance it goes to is drawn with the delay, at the logout: a
    /// draw when it fires would fall between other draws at a moment set by
    /// timing, and the browser's later choices would differ run to run.
    replay: Option<(BrowserId, String, Instant, usize)>,
}

impl SimBrowser {
    /// Goose user number `user`: browser number `slot` of a single run
    /// (the same under a shard), person `slot / per_person`.
    pub fn new(shared: &Shared, user: usize) -> Self {
        let slot = shared.slot(user);
        let person = slot / shared.workload.browsers_per_person.get();
        let user = person_name(person);
        let id = shared.recorder.browser(BrowserInfo {
            person: person as u32,
            user: user.clone(),
        });
        Self {
            id,
            person,
            user,
            browser: Browser::new(&shared.http, shared.workload.request_timeout),
            rng: StdRng::seed_from_u64(seed_of(shared.seed, slot, 0)),
            hop: Hop::new(shared.workload.hopping, shared.instances.len(), slot),
            slot,
            generation: 0,
            departures: 0,
            next_item: 0,
            signed_out: true,
            profile_due: None,
            replay: None,
        }
    }

    /// A fresh browser for the person now in this seat, with its own choices.
    fn open_browser(&mut self, shared: &Shared) {
        self.generation += 1;
        self.browser = Browser::new(&shared.http, shared.workload.request_timeout);
        self.id = shared.recorder.browser(BrowserInfo {
            person: self.person as u32,
            user: self.user.clone(),
        });
        self.rng = StdRng::seed_from_u64(seed_of(shared.seed, self.slot, self.generation));
        self.next_item = 0;
    }

    /// One step: sign in if signed out, else an action drawn from the mix;
    /// then the think time.
    pub async fn step(&mut self, shared: &Shared) {
        if self
            .replay
            .as_ref()
            .is_some_and(|(_, _, due, _)| *due <= Instant::now())
            && let Some((id, cookie, _, target)) = self.replay.take()
        {
            self.replay(shared, id, &cookie, target).await;
        }
        if self.signed_out {
            self.sign_in(shared).await;
        } else {
            let action = shared.actions[shared.mix.sample(&mut self.rng)];
            self.act(shared, action).await;
        }
        let pause = shared.workload.think_time.draw(self.rng.random::<f64>());
        if pause.is_zero() {
            // tokio's timers tick in milliseconds: a zero sleep would still
            // wait for the next tick. Give way to the other browsers instead.
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
        }
    }

    pub async fn sign_in(&mut self, shared: &Shared) {
        let outcome = self.send(shared, Request::SignIn).await;
        self.signed_out = !outcome.ok();
        // The code exchange just stored a token of the whole lifetime.
        self.profile_due = outcome.ok().then(|| {
            unix_now() + (shared.workload.idp.access_token_lifetime).as_secs_f64()
                - shared.renewal_offset.as_secs_f64()
        });
    }

    async fn act(&mut self, shared: &Shared, action: Action) {
        match action {
            Action::Profile => {
                self.send(shared, Request::Profile).await;
            }
            Action::Data => {
                let resource = RESOURCES[self.rng.random_range(0..RESOURCES.len())].to_owned();
                self.send(shared, Request::Data { resource }).await;
            }
            Action::CartWrite => {
                let item = self.item();
                self.send(shared, Request::CartWrite { item }).await;
            }
            Action::CartRead => {
                self.send(shared, Request::CartRead).await;
            }
            Action::Burst => self.burst(shared).await,
            Action::Race => self.race(shared).await,
            Action::Idle => {
                let idle = shared.workload.idp.access_token_lifetime + Duration::from_secs(1);
                tokio::time::sleep(idle).await;
            }
            Action::Relogin => {
                let cookie = shared
                    .instances
                    .first()
                    .and_then(|i| self.browser.cookie(&i.base, &shared.session_cookie));
                let outcome = self.send(shared, Request::Logout).await;
                if let (true, Some(cookie)) = (outcome.ok(), cookie) {
                    let (least, most) = REPLAY_AFTER;
                    let after = least + (most - least).mul_f64(self.rng.random::<f64>());
                    let target = self.rng.random_range(0..shared.instances.len());
                    // A replay still pending stays: were each logout to
                    // replace it, a browser that logs out more often than
                    // every few seconds would never replay at all.
                    if self.replay.is_none() {
                        self.replay = Some((self.id, cookie, Instant::now() + after, target));
                    }
                }
                self.sign_in(shared).await;
            }
            Action::SignIn => self.sign_in(shared).await,
            Action::NewBrowser => {
                self.open_browser(shared);
                self.sign_in(shared).await;
            }
            Action::Leave => {
                // No logout: the old browser is simply never used again.
                self.departures += 1;
                self.person = newcomer(&shared.workload, self.slot, self.departures);
                self.user = person_name(self.person);
                self.open_browser(shared);
                self.sign_in(shared).await;
            }
            Action::Health => {
                self.send(shared, Request::Health).await;
            }
        }
    }

    /// Two cart writes and a data call at once, as a page loading in parallel.
    async fn burst(&mut self, shared: &Shared) {
        let resource = RESOURCES[self.rng.random_range(0..RESOURCES.len())].to_owned();
        let requests = [
            Request::CartWrite { item: self.item() },
            Request::CartWrite { item: self.item() },
            Request::Data { resource },
        ];
        let targets: Vec<usize> = requests
            .iter()
            .map(|_| self.hop.next(&mut self.rng))
            .collect();
        let sent = requests.into_iter().zip(targets).map(|(request, target)| {
            exchange(shared, &self.browser, self.id, &self.user, target, request)
        });
        let outcomes = futures::future::join_all(sent).await;
        self.after(outcomes.iter().map(|(t, o)| (*t, o)));
    }

    /// The cookie held before a logout, alone in a jar of its own, on an
    /// instance drawn at random: it must not be answered as signed in.
    async fn replay(&mut self, shared: &Shared, id: BrowserId, cookie: &str, target: usize) {
        let old = Browser::new(&shared.http, shared.workload.request_timeout);
        let set = format!("{}={cookie}; Path=/", shared.session_cookie);
        if old.set_cookie(&shared.instances[target].base, &set).is_ok() {
            exchange(shared, &old, id, &self.user, target, Request::Replay).await;
        }
    }

    /// Once the session's token is due: a profile call and a cart write to
    /// each of two or three instances at the same moment, then a cart read
    /// (what the writes left).
    async fn race(&mut self, shared: &Shared) {
        // A second past due: the app stamps expiries in whole seconds.
        // Never longer than a token lives (an `idle` waits as long).
        let longest = shared.workload.idp.access_token_lifetime + Duration::from_secs(1);
        let wait = self.profile_due.map_or(Duration::ZERO, |due| {
            Duration::try_from_secs_f64(due + 1.0 - unix_now())
                .unwrap_or(Duration::ZERO)
                .min(longest)
        });
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let width = if shared.instances.len() >= 3 { 3 } else { 2 };
        let targets = self.hop.spread(&mut self.rng, width);
        let mut sent = Vec::with_capacity(2 * width);
        for &target in &targets {
            sent.push((target, Request::Profile));
            sent.push((target, Request::CartWrite { item: self.item() }));
        }
        let outcomes = futures::future::join_all(sent.into_iter().map(|(target, request)| {
            exchange(shared, &self.browser, self.id, &self.user, target, request)
        }))
        .await;
        for (_, outcome) in &outcomes {
            self.note(shared, outcome);
        }
        self.after(outcomes.iter().map(|(t, o)| (*t, o)));
        if !self.signed_out {
            self.send(shared, Request::CartRead).await;
        }
    }

    /// What an answer tells of the session's token: a `/profile` echo says
    /// when it expires.
    fn note(&mut self, shared: &Shared, outcome: &Outcome) {
        if let Some(Observed::Token {
            scopes: None, exp, ..
        }) = outcome.observed()
            && outcome.ok()
        {
            self.profile_due = Some(*exp as f64 - shared.renewal_offset.as_secs_f64());
        }
    }

    fn item(&mut self) -> u32 {
        self.next_item += 1;
        self.next_item
    }

    async fn send(&mut self, shared: &Shared, request: Request) -> Outcome {
        let target = self.hop.next(&mut self.rng);
        let (target, outcome) =
            exchange(shared, &self.browser, self.id, &self.user, target, request).await;
        self.note(shared, &outcome);
        self.after(std::iter::once((target, &outcome)));
        outcome
    }

    /// What the answers mean for the browser: signed out, or an instance down.
    fn after<'o>(&mut self, outcomes: impl Iterator<Item = (usize, &'o Outcome)>) {
        for (target, outcome) in outcomes {
            if outcome.status() == Some(401) {
                self.signed_out = true;
            }
            let down = matches!(
                outcome,
                Outcome::NoAnswer {
                    cause: NoAnswer::Refused,
                    ..
                }
            ) || matches!(outcome.status(), Some(502..=504));
            if down {
                self.hop.failed(target);
            }
        }
    }
}

/// Now, in Unix seconds (what token expiries are stamped in).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The person who sits down at `slot` after its `departures`-th leaver:
/// numbered past the scenario's people, one number per (slot, departure),
/// so every newcomer is a user nobody else signs in as.
fn newcomer(workload: &Workload, slot: usize, departures: usize) -> usize {
    workload.people.get() + slot + workload.browsers() * (departures - 1)
}

/// A seed per browser and generation, from the scenario's seed.
fn seed_of(seed: u64, slot: usize, generation: u64) -> u64 {
    // SplitMix64 of the three, so neighbouring browsers differ in every bit.
    let mut x = seed ^ (slot as u64).rotate_left(32) ^ generation.rotate_left(48);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Sends one request to instance `target`, times it, records it.
async fn exchange(
    shared: &Shared,
    browser: &Browser,
    id: BrowserId,
    user: &str,
    target: usize,
    request: Request,
) -> (usize, Outcome) {
    let instance = &shared.instances[target];
    let base = instance.base.as_str();
    let invoked = shared.elapsed();
    let outcome = match &request {
        Request::SignIn => {
            let answer = browser.sign_in(base, user).await;
            answered(answer, |home| {
                if !home.signed_in {
                    return Observed::Nothing;
                }
                // Labels, never the cookies: a history is passed around.
                Observed::SignedIn {
                    user: home.user.clone(),
                    session: browser
                        .cookie(base, &shared.session_cookie)
                        .map(|cookie| shared.labels.session(&cookie)),
                    idp_sid: browser
                        .cookie(
                            &shared.idp_base,
                            mock_idp::endpoints::authorize::SESSION_COOKIE,
                        )
                        .map(|sid| shared.labels.label("idp", &sid)),
                }
            })
        }
        Request::Profile => answered(browser.profile(base).await, |r| token(r, &shared.labels)),
        Request::Data { resource } => answered(browser.data(base, resource).await, |r| {
            token(r, &shared.labels)
        }),
        Request::CartWrite { item } => {
            let shard = shared.item_prefix();
            let own = format!("{shard}{id}-");
            let answer = browser.add_to_cart(base, &format!("{own}{item}")).await;
            answered(answer, |cart| items(cart, &own, &shard))
        }
        Request::CartRead | Request::Replay => {
            let shard = shared.item_prefix();
            let own = format!("{shard}{id}-");
            answered(browser.cart(base).await, |cart| items(cart, &own, &shard))
        }
        Request::Logout => answered(browser.logout(base).await, |out| Observed::LoggedOut {
            idp_session_ended: out.idp_session_ended,
        }),
        Request::Health => match browser.get(&format!("{base}/healthz")).await {
            Ok(page) => Outcome::Answered {
                status: page.status,
                instance: page.instance,
                session_version: page.session_version,
                error: None,
                observed: Observed::Nothing,
            },
            Err(e) => no_answer(&e),
        },
    };
    let completed = shared.elapsed();
    shared.latencies.record(
        request.kind_index(),
        target,
        invoked,
        completed - invoked,
        &outcome,
    );
    shared.recorder.record(Event {
        browser: id,
        request,
        sent_to: instance.id.clone(),
        invoked,
        completed,
        outcome: outcome.clone(),
    });
    (target, outcome)
}

/// An answer as the history keeps it: the headers, the error code, and
/// what `observe` makes of a contract reply.
fn answered<T>(
    answer: Result<Answer<T>, BrowserError>,
    observe: impl FnOnce(&T) -> Observed,
) -> Outcome {
    match answer {
        Err(e) => no_answer(&e),
        Ok(answer) => {
            let (error, observed) = match &answer.outcome {
                Body::Reply(reply) => (None, observe(reply)),
                Body::Error(e) => (Some(e.error.to_string()), Observed::Nothing),
                Body::Unreadable(_) => (None, Observed::Nothing),
            };
            Outcome::Answered {
                status: answer.status,
                instance: answer.instance,
                session_version: answer.session_version,
                error,
                observed,
            }
        }
    }
}

fn no_answer(error: &BrowserError) -> Outcome {
    let cause = match error {
        BrowserError::Connect { .. } => NoAnswer::Refused,
        BrowserError::Timeout { .. } => NoAnswer::Timeout,
        _ => NoAnswer::Lost,
    };
    Outcome::NoAnswer {
        cause,
        // A sign-in's redirect URLs carry its code and state.
        detail: error.redacted(),
    }
}

/// The API's echo of a token; its IdP session (labelled as the sign-in's
/// IdP cookie is, the mock IdP's cookie being the session id) and its id
/// kept as labels.
fn token(reply: &contract::ProfileReply, labels: &Labels) -> Observed {
    Observed::Token {
        user: reply.user.clone(),
        source: reply.token_source,
        sub: reply.api.sub.clone(),
        sid: reply.api.sid.as_deref().map(|sid| labels.label("idp", sid)),
        jti: labels.label("jti", &reply.api.jti),
        scopes: reply.scopes.clone(),
        exp: reply.api.exp,
    }
}

/// This browser's item numbers in the cart, and how many are not its own.
/// Items of this process's other browsers are named as `b7-3` (the history's
/// browser ids); under a shard they carry the shard (`s2b7-3`), which is
/// dropped for this shard's own and kept for another's, so `analyze` of
/// several shards can tell whose they are.
fn items(cart: &contract::CartReply, own: &str, shard: &str) -> Observed {
    let mut items = Vec::with_capacity(cart.items.len());
    let mut foreign = 0;
    let mut others = Vec::new();
    for item in &cart.items {
        match item.strip_prefix(own).and_then(|n| n.parse().ok()) {
            Some(n) => items.push(n),
            None => {
                foreign += 1;
                if others.len() < OTHERS_NAMED {
                    let local = item
                        .strip_prefix(shard)
                        .filter(|rest| !shard.is_empty() && rest.starts_with('b'));
                    others.push(local.map_or_else(|| item.clone(), str::to_owned));
                }
            }
        }
    }
    Observed::Cart {
        version: cart.version,
        items,
        foreign,
        others,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_newcomer_is_a_user_nobody_else_signs_in_as() {
        let workload = Workload {
            people: std::num::NonZeroUsize::new(3).expect("3"),
            browsers_per_person: std::num::NonZeroUsize::new(2).expect("2"),
            ..Workload::default()
        };
        let mut seen: HashSet<usize> = (0..3).collect();
        for departures in 1..=4 {
            for slot in 0..workload.browsers() {
                let person = newcomer(&workload, slot, departures);
                assert!(seen.insert(person), "person {person} twice");
                assert_eq!(person, newcomer(&workload, slot, departures));
            }
        }
    }
}
