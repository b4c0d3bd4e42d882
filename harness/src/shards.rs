//! The histories of one scenario's shards (`bench --shard I/N --history`)
//! made one history, for `harness analyze` to judge them together as one
//! run of the whole scenario.
//!
//! - They must be shards of one run: each carries its shard, all of one cut
//!   (the same N and fault shard), each shard once, and the same scenario
//!   (seed, workload, faults, instances, app).
//! - Browser ids are per process, so each shard's are moved past the
//!   previous shards' (shard 1's first, then shard 2's, ...), and the cart
//!   items other browsers wrote, named `b7-3` (this shard's) or `s2b7-3`
//!   (shard 2's) by the driver, are renamed to the new ids.
//! - Times count from each shard's own start: they are moved onto the
//!   earliest shard's clock by the difference of their wall-clock starts
//!   (the same under `--start-at`, but for the clocks' skew).
//! - The fault timeline is the fault shard's, the only one that applied the
//!   faults: the rule is that its steps are every browser's fault windows.
//!   Other shards ran no fault; what their stage saw happen by itself is
//!   left out (against a shared remote target they watch nothing). Without
//!   the fault shard's history a scenario with faults is refused: its
//!   anomalies could not be put in their windows.
//! - The live facts (samples, reference round trips, CPU, what the stores
//!   kept) are the fault shard's; the IdP's counts are the largest any shard
//!   read, as shards of a remote target all read the one IdP, each at its end.

use crate::history::{BrowserId, History, Observed, Outcome};
use crate::judge::RunFacts;
use crate::results::{Source, SourceShard};

/// One shard's history file, read.
pub struct Part {
    /// The file, for messages.
    pub name: String,
    pub history: History,
    pub facts: RunFacts,
}

/// Why histories are not one run's shards.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotShards(String);

/// The shards' histories as one, the facts to judge it by, and each shard's
/// source for the results.
pub struct Combined {
    pub history: History,
    pub facts: RunFacts,
    pub sources: Vec<Source>,
}

/// Checks that `parts` are shards of one run and makes them one history.
pub fn combine(mut parts: Vec<Part>) -> Result<Combined, NotShards> {
    let fail = |message: String| Err(NotShards(message));
    let mut shards: Vec<SourceShard> = Vec::with_capacity(parts.len());
    for part in &parts {
        match part.facts.shard {
            Some(shard) => shards.push(shard),
            None => {
                return fail(format!(
                    "{} is a whole run's history, not a shard's (no --shard): analyze takes one whole run's history, or the histories of one run's shards",
                    part.name
                ));
            }
        }
    }
    let first = &parts[0];
    for (part, shard) in parts.iter().zip(&shards).skip(1) {
        if shard.count != shards[0].count || shard.fault_shard != shards[0].fault_shard {
            return fail(format!(
                "{} is shard {shard} (faults by shard {}) and {} shard {} (faults by shard {}): not one run's shards",
                part.name, shard.fault_shard, first.name, shards[0], shards[0].fault_shard
            ));
        }
        if let Some(why) = differs(&first.facts, &part.facts) {
            return fail(format!(
                "{} and {} are shards of different scenarios ({why}): only one scenario's shards are judged together",
                first.name, part.name
            ));
        }
    }
    for (k, shard) in shards.iter().enumerate() {
        if let Some(j) = shards[..k].iter().position(|s| s.index == shard.index) {
            return fail(format!(
                "{} and {} are both shard {shard}: give each shard's history once",
                parts[j].name, parts[k].name
            ));
        }
    }
    let fault_shard = shards[0].fault_shard;
    let base = match shards.iter().position(|s| s.index == fault_shard) {
        Some(base) => base,
        None if first.facts.scenario.faults.is_empty() => 0,
        None => {
            return fail(format!(
                "the histories hold no shard {fault_shard}/{}, the one that applied the scenario's faults: without its fault timeline the anomalies cannot be put in their fault windows; add its history",
                shards[0].count
            ));
        }
    };
    // Shard 1's browsers first, then shard 2's, ...
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| shards[i].index);
    let t0 = parts
        .iter()
        .map(|p| p.facts.started_unix_ms)
        .min()
        .unwrap_or(0);
    let shift_of = |facts: &RunFacts| (facts.started_unix_ms - t0) * 1000;
    // Where each shard's browser ids start, by shard index.
    let mut offsets: Vec<(u32, u32)> = Vec::with_capacity(parts.len());
    let mut next = 0u32;
    for &i in &order {
        offsets.push((shards[i].index, next));
        next += parts[i].history.browsers.len() as u32;
    }
    let offset_of = |index: u32| offsets.iter().find(|(i, _)| *i == index).map(|(_, o)| *o);

    let mut history = History::default();
    let mut sources = Vec::with_capacity(parts.len());
    for &i in &order {
        let part = &mut parts[i];
        let shift = shift_of(&part.facts);
        let own = offset_of(shards[i].index).unwrap_or(0);
        history.browsers.append(&mut part.history.browsers);
        for mut event in std::mem::take(&mut part.history.events) {
            event.browser = BrowserId(event.browser.0 + own);
            event.invoked += shift;
            event.completed += shift;
            if let Outcome::Answered {
                observed: Observed::Cart { others, .. },
                ..
            } = &mut event.outcome
            {
                for other in others.iter_mut() {
                    *other = renamed(other, own, &offset_of);
                }
            }
            history.events.push(event);
        }
        sources.push(Source {
            name: part.facts.source.clone(),
            host: part.facts.host.clone(),
            started_at: crate::scenario::time::rfc3339(part.facts.started_unix_ms),
            started_unix_ms: part.facts.started_unix_ms,
            duration_secs: part.facts.duration_secs,
            shard: Some(shards[i]),
        });
    }
    // Each shard's events completed in order; together, by the shared clock.
    history.events.sort_by_key(|e| e.completed);

    let base_shift = shift_of(&parts[base].facts);
    history.faults = std::mem::take(&mut parts[base].history.faults);
    for step in &mut history.faults {
        step.at += base_shift;
    }
    let mut facts = parts[base].facts.clone();
    for sample in &mut facts.samples {
        sample.at += base_shift;
    }
    facts.started_unix_ms = t0;
    facts.look = parts
        .iter()
        .map(|p| p.facts.look + shift_of(&p.facts))
        .max()
        .unwrap_or(0);
    facts.duration_secs = parts
        .iter()
        .map(|p| (p.facts.started_unix_ms - t0) as f64 / 1e3 + p.facts.duration_secs)
        .fold(0.0, f64::max);
    facts.stopped_because = parts.iter().find_map(|p| p.facts.stopped_because.clone());
    if let Some(largest) = parts
        .iter()
        .map(|p| &p.facts.idp)
        .max_by_key(|idp| idp.code_exchanges + idp.refreshes + idp.failed)
    {
        facts.idp = largest.clone();
    }
    facts.source = sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    facts.shard = None;
    Ok(Combined {
        history,
        facts,
        sources,
    })
}

/// What makes two shards' runs different scenarios, if anything.
fn differs(a: &RunFacts, b: &RunFacts) -> Option<String> {
    let (x, y) = (&a.scenario, &b.scenario);
    if x.seed != y.seed {
        Some(format!("seed {} against {}", x.seed, y.seed))
    } else if x.workload != y.workload {
        Some("their workloads differ".into())
    } else if x.faults != y.faults {
        Some("their faults differ".into())
    } else if x.instances != y.instances {
        Some(format!("{} instances against {}", x.instances, y.instances))
    } else if a.topology.name != b.topology.name {
        Some(format!(
            "app {} against {}",
            a.topology.name, b.topology.name
        ))
    } else {
        None
    }
}

/// A cart item another browser wrote, as one shard's driver named it
/// (`b7-3`: this shard's browser 7; `s2b7-3`: shard 2's), under the
/// combined history's browser ids. A name of neither form, or of a shard
/// not given, is left as it is (the checker counts it as not named).
fn renamed(item: &str, own: u32, offset_of: &impl Fn(u32) -> Option<u32>) -> String {
    let (offset, rest) = match item.strip_prefix('s') {
        Some(tail) => {
            let digits = tail.chars().take_while(char::is_ascii_digit).count();
            let Some(offset) = tail[..digits].parse().ok().and_then(offset_of) else {
                return item.to_owned();
            };
            (offset, &tail[digits..])
        }
        None => (own, item),
    };
    let Some((browser, n)) = rest.strip_prefix('b').and_then(|r| r.split_once('-')) else {
        return item.to_owned();
    };
    match browser.parse::<u32>() {
        Ok(browser) => format!("b{}-{n}", browser + offset),
        Err(_) => item.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{BrowserInfo, Event, FaultStep, Request, Unscheduled};

    const RESTART: &str = "at 1s: instance-restart app-1";

    /// Shard `index` of 2, started `started` ms after the epoch, with
    /// `browsers` browsers, each of which read a cart naming `others`.
    fn part(index: u32, started: u64, browsers: u32, others: &[&str]) -> Part {
        let mut history = History::default();
        for b in 0..browsers {
            history.browsers.push(BrowserInfo {
                person: index - 1 + 2 * b,
                user: format!("person-{}", index - 1 + 2 * b),
            });
            history.events.push(Event {
                browser: BrowserId(b),
                request: Request::CartRead,
                sent_to: "app-1".into(),
                invoked: 1_000 * u64::from(b),
                completed: 1_000 * u64::from(b) + 500,
                outcome: Outcome::Answered {
                    status: 200,
                    instance: Some("app-1".into()),
                    session_version: None,
                    error: None,
                    observed: Observed::Cart {
                        version: 1,
                        items: Vec::new(),
                        foreign: others.len() as u32,
                        others: others.iter().map(|o| (*o).to_owned()).collect(),
                    },
                },
            });
        }
        let mut facts = RunFacts {
            source: format!("host{index}"),
            started_unix_ms: started,
            shard: Some(SourceShard {
                index,
                count: 2,
                fault_shard: 1,
            }),
            ..RunFacts::default()
        };
        facts.scenario.seed = 11;
        facts.scenario.faults = vec![RESTART.to_owned()];
        Part {
            name: format!("shard{index}.history.jsonl"),
            history,
            facts,
        }
    }

    fn step(at: u64, action: &str, unscheduled: bool) -> FaultStep {
        FaultStep {
            at,
            took: 10,
            action: action.into(),
            ends: None,
            error: None,
            unscheduled: unscheduled.then(|| Unscheduled {
                status: "exit status: 1".into(),
                last_output: Vec::new(),
            }),
        }
    }

    #[test]
    fn the_fault_timeline_is_the_fault_shards_and_ids_and_times_line_up() {
        // Shard 2 started 2 ms after shard 1; shard 1 applied the fault.
        let mut one = part(1, 1_000_000, 2, &["s2b1-7"]);
        one.history
            .faults
            .push(step(1_000_000, "instance-restart app-1", false));
        let mut two = part(2, 1_000_002, 3, &["s1b0-1", "b2-4"]);
        // Shard 2's own stage event is not the scenario's fault: left out.
        two.history
            .faults
            .push(step(5, "instance-exit app-9", true));
        let combined = combine(vec![two, one]).expect("one run's shards");
        let h = &combined.history;
        assert_eq!(h.browsers.len(), 5);
        assert_eq!(
            h.faults,
            [step(1_000_000, "instance-restart app-1", false)],
            "the fault shard's steps, on the earliest clock (its own)"
        );
        // Shard 2's browser 2 is browser 4 now, its events 2 ms later.
        let last = h
            .events
            .iter()
            .find(|e| e.browser == BrowserId(4))
            .expect("shard 2's third browser");
        assert_eq!((last.invoked, last.completed), (4_000, 4_500));
        let named = |b: u32| match &h.events.iter().find(|e| e.browser == BrowserId(b)) {
            Some(Event {
                outcome:
                    Outcome::Answered {
                        observed: Observed::Cart { others, .. },
                        ..
                    },
                ..
            }) => others.clone(),
            _ => Vec::new(),
        };
        assert_eq!(named(0), ["b3-7"], "shard 2's browser 1");
        assert_eq!(named(2), ["b0-1", "b4-4"], "shard 1's browser 0; its own 2");
        assert_eq!(
            combined
                .sources
                .iter()
                .map(|s| (s.name.as_str(), s.shard.map(|s| s.index)))
                .collect::<Vec<_>>(),
            [("host1", Some(1)), ("host2", Some(2))]
        );
        assert_eq!(combined.facts.shard, None);
        assert_eq!(combined.facts.started_unix_ms, 1_000_000);
        // The verdict's timeline carries the fault for every browser.
        let judged = crate::judge::judge(&combined.facts, &combined.history);
        assert_eq!(judged.results.timelines[0].faults.len(), 1);
    }

    #[test]
    fn what_is_not_one_runs_shards_is_refused() {
        let error = |parts: Vec<Part>| combine(parts).err().expect("refused").to_string();
        let twice = error(vec![part(1, 0, 1, &[]), part(1, 0, 1, &[])]);
        assert!(twice.contains("both shard 1/2"), "{twice}");
        let no_faults = error(vec![part(2, 0, 1, &[]), {
            let mut p = part(2, 0, 1, &[]);
            p.name = "again".into();
            p.facts.shard = Some(SourceShard {
                index: 2,
                count: 3,
                fault_shard: 1,
            });
            p
        }]);
        assert!(no_faults.contains("not one run's shards"), "{no_faults}");
        let mut whole = part(2, 0, 1, &[]);
        whole.facts.shard = None;
        let whole = error(vec![part(1, 0, 1, &[]), whole]);
        assert!(whole.contains("whole run's history"), "{whole}");
        let mut other = part(2, 0, 1, &[]);
        other.facts.scenario.seed = 12;
        let other = error(vec![part(1, 0, 1, &[]), other]);
        assert!(other.contains("seed 11 against 12"), "{other}");
        // Without the shard that applied the faults, their windows are unknown.
        let missing = error(vec![part(2, 0, 1, &[])]);
        assert!(missing.contains("no shard 1/2"), "{missing}");
        let mut calm = part(2, 0, 1, &[]);
        calm.facts.scenario.faults.clear();
        assert!(
            combine(vec![calm]).is_ok(),
            "no faults: no fault shard needed"
        );
    }

    #[test]
    fn items_are_renamed_to_the_combined_ids() {
        let offsets = |index: u32| match index {
            1 => Some(0),
            2 => Some(10),
            _ => None,
        };
        assert_eq!(renamed("b3-4", 10, &offsets), "b13-4");
        assert_eq!(renamed("b3-4", 0, &offsets), "b3-4");
        assert_eq!(renamed("s2b3-4", 0, &offsets), "b13-4");
        assert_eq!(renamed("s1b3-4", 10, &offsets), "b3-4");
        assert_eq!(renamed("s9b3-4", 0, &offsets), "s9b3-4", "no such shard");
        assert_eq!(renamed("apple", 0, &offsets), "apple");
    }
}
