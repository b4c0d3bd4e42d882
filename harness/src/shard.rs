//! Load from several machines: `harness bench --shard I/N` runs slice I of
//! N of a scenario's browsers (k6's execution segments), so N harness
//! processes on N machines drive one target together.
//!
//! The slice is a pure function of the scenario and the shard: every browser
//! is planned as a single run plans it (browser number `slot`, person
//! `slot / per_person`, choices seeded from the scenario's seed and the
//! slot), and a shard keeps the people whose number is `I - 1` modulo `N`,
//! with all of their browsers: a person's browsers share one user, so
//! hopping, relogin and newcomers stay within one process. Taking every
//! N-th person (rather than a block) spreads each shard's browsers over the
//! whole ramp, so the N ramps together rise as the single run's does.
//!
//! `--start-at` is a wall-clock moment (UTC) at which every shard starts its
//! load, so their histories line up; it must be ahead, and not by more than
//! [`MAX_START_AHEAD`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;
use crate::scenario::workload::Workload;

/// The furthest ahead `--start-at` may be: further is taken for a typo (a
/// wrong hour or date) or a clock far off, not a plan.
pub const MAX_START_AHEAD: Duration = Duration::from_secs(3600);

/// The most shards a scenario may be cut into.
pub const MAX_SHARDS: u32 = 10_000;

/// Slice `index` (from 1) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A shard that cannot run this scenario.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(
        "--shard {shard}: the scenario has {people} people ([browsers] people), and each shard needs at least one; use at most {people} shards"
    )]
    TooFew { shard: Shard, people: usize },
    #[error(
        "--shard {shard}: the scenario's fault_shard is {fault_shard} ({at}), beyond the {count} shards; name one of 1 to {count}"
    )]
    FaultShard {
        shard: Shard,
        fault_shard: u32,
        at: String,
        count: u32,
    },
    #[error("--start-at runs one load at a set moment; this bench runs {0} apps in turn: name one")]
    StartAtWithSeveralApps(usize),
}

impl Shard {
    /// Reads `I/N` as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = "I/N: this process runs slice I of N, 1 <= I <= N (e.g. 1/2 and 2/2)";
        let (index, count) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not {usage}"))?;
        let number = |part: &str, what: &str| -> Result<u32, String> {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("{what} in {text:?} is not a whole number; give {usage}"))
        };
        let (index, count) = (number(index, "I")?, number(count, "N")?);
        if count == 0 {
            return Err(format!(
                "{text}: N, the number of shards, must be at least 1; give {usage}"
            ));
        }
        if count > MAX_SHARDS {
            return Err(format!(
                "{text}: at most {MAX_SHARDS} shards (each runs at least one person)"
            ));
        }
        if index == 0 || index > count {
            return Err(format!(
                "{text}: I counts from 1 and is at most N, so 1 to {count} here; give {usage}"
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether person number `person` (of the scenario's people) is this shard's.
    pub fn has_person(&self, person: usize) -> bool {
        person % self.count as usize == (self.index - 1) as usize
    }

    /// Refuses a shard that would have no browser to run.
    pub fn check(&self, workload: &Workload) -> Result<(), ShardError> {
        if self.count as usize > workload.people.get() {
            return Err(ShardError::TooFew {
                shard: *self,
                people: workload.people.get(),
            });
        }
        Ok(())
    }

    /// Refuses a shard of `scenario` with no browser to run, or a scenario
    /// whose `fault_shard` is past this shard count (no shard would apply
    /// its faults).
    pub fn check_scenario(&self, scenario: &Scenario) -> Result<(), ShardError> {
        self.check(&scenario.workload)?;
        if let Some((fault_shard, at)) = &scenario.fault_shard
            && *fault_shard > self.count
        {
            return Err(ShardError::FaultShard {
                shard: *self,
                fault_shard: *fault_shard,
                at: at.to_string(),
                count: self.count,
            });
        }
        Ok(())
    }

    /// This shard's browser numbers (slots) of a single run, ascending.
    pub fn slots(&self, workload: &Workload) -> Vec<usize> {
        let per = workload.browsers_per_person.get();
        (0..workload.people.get())
            .filter(|&p| self.has_person(p))
            .flat_map(|p| p * per..(p + 1) * per)
            .collect()
    }

    /// Goose's test plan for this shard: at each stage, as many browsers as
    /// the single run's first `browsers` slots hold of this shard's.
    pub fn test_plan(&self, workload: &Workload) -> String {
        let slots = self.slots(workload);
        workload
            .stages
            .iter()
            .map(|s| {
                let browsers = slots.partition_point(|&slot| slot < s.browsers);
                format!("{browsers},{}", s.over.as_millis().div_ceil(1000))
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Which single-run slot this shard's goose user number `local` is. Goose
/// numbers users as it starts them; a plan that ramps down and up again
/// starts more users than the shard has slots, and those go on in the same
/// pattern a whole run further (as a single run's users past its browsers
/// do), so no two shards ever share a slot.
pub fn slot_of(slots: &[usize], browsers: usize, local: usize) -> usize {
    match slots.len() {
        0 => local,
        n => slots[local % n] + browsers * (local / n),
    }
}

/// Reads `--start-at`: `YYYY-MM-DDTHH:MM:SSZ` (UTC, optional fraction of a
/// second), refused when past or more than [`MAX_START_AHEAD`] ahead.
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let at = parse_utc(text)?;
    check_start_at(text, at, SystemTime::now())?;
    Ok(at)
}

/// Refuses a start moment in the past or too far ahead of `now`.
pub fn check_start_at(text: &str, at: SystemTime, now: SystemTime) -> Result<(), String> {
    match at.duration_since(now) {
        Err(past) => Err(format!(
            "{text} is {} in the past (now {}): give a moment ahead of every shard's clock, at most {} ahead",
            span(past.duration()),
            utc(now),
            span(MAX_START_AHEAD)
        )),
        Ok(ahead) if ahead > MAX_START_AHEAD => Err(format!(
            "{text} is {} ahead (now {}); at most {} is allowed (a later start is more likely a wrong hour or date, or a clock far off)",
            span(ahead),
            utc(now),
            span(MAX_START_AHEAD)
        )),
        Ok(_) => Ok(()),
    }
}

/// `1 h 5 min`, `12 s`: how far a moment is.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ if secs % 3600 < 60 => format!("{} h", secs / 3600),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn utc(at: SystemTime) -> String {
    crate::scenario::time::rfc3339(
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` as a moment.
fn parse_utc(text: &str) -> Result<SystemTime, String> {
    let wrong = || {
        format!(
            "{text:?} is not a UTC time as YYYY-MM-DDTHH:MM:SSZ (e.g. {}; `date -u -d '+1 min' +%FT%TZ` makes one)",
            utc(SystemTime::now() + Duration::from_secs(60))
        )
    };
    let body = text.trim().strip_suffix(['Z', 'z']).ok_or_else(wrong)?;
    let (date, time) = body.split_once(['T', 't', ' ']).ok_or_else(wrong)?;
    let numbers = |part: &str, sep: char| -> Option<Vec<u32>> {
        part.split(sep).map(|n| n.parse().ok()).collect()
    };
    let date = numbers(date, '-').ok_or_else(wrong)?;
    let (time, fraction) = match time.split_once('.') {
        Some((t, f)) if !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()) => {
            let digits: String = f.chars().take(9).collect();
            let nanos = format!("{digits:0<9}")
                .parse::<u32>()
                .map_err(|_| wrong())?;
            (t, nanos)
        }
        Some(_) => return Err(wrong()),
        None => (time, 0),
    };
    let time = numbers(time, ':').ok_or_else(wrong)?;
    let [y, mo, d] = <[u32; 3]>::try_from(date).map_err(|_| wrong())?;
    let [h, mi, s] = <[u32; 3]>::try_from(time).map_err(|_| wrong())?;
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=days_in(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || s > 59
    {
        return Err(wrong());
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days as u64 * 86_400 + u64::from(h * 3600 + mi * 60 + s);
    Ok(UNIX_EPOCH + Duration::new(secs, fraction))
}

fn days_in(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm, the
/// inverse of the one `scenario::time::rfc3339` uses).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::num::NonZeroUsize;

    use super::*;
    use crate::scenario::workload::Stage;

    fn workload(people: usize, per: usize, stages: &[usize]) -> Workload {
        Workload {
            people: NonZeroUsize::new(people).expect("people"),
            browsers_per_person: NonZeroUsize::new(per).expect("per"),
            stages: stages
                .iter()
                .map(|&browsers| Stage {
                    browsers,
                    over: Duration::from_secs(2),
                })
                .collect(),
            ..Workload::default()
        }
    }

    #[test]
    fn bad_shards_are_refused_with_what_is_allowed() {
        for (text, says) in [
            ("0/2", "I counts from 1"),
            ("3/2", "1 to 2"),
            ("1/0", "at least 1"),
            ("1", "is not I/N"),
            ("a/2", "not a whole number"),
            ("1/-2", "not a whole number"),
            ("1/99999999", "at most 10000"),
        ] {
            let error = Shard::parse(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
    }

    #[test]
    fn shards_cover_every_browser_once_keeping_each_person_whole() {
        let w = workload(7, 2, &[14, 14, 0]);
        let mut seen = HashSet::new();
        for index in 1..=3 {
            let shard = Shard { index, count: 3 };
            let slots = shard.slots(&w);
            for &slot in &slots {
                assert!(seen.insert(slot), "slot {slot} twice");
                // A person's browsers are in one shard.
                assert!(shard.has_person(slot / 2));
            }
            // Goose users past the slots go on without meeting another shard's.
            for local in 0..slots.len() * 3 {
                let slot = slot_of(&slots, w.browsers(), local);
                assert!(shard.has_person(slot % w.browsers() / 2), "{shard} {local}");
            }
        }
        assert_eq!(seen.len(), 14);
        // The shards' stages add up to the single run's.
        let plans: Vec<String> = (1..=3)
            .map(|index| Shard { index, count: 3 }.test_plan(&w))
            .collect();
        assert_eq!(plans, ["6,2;6,2;0,2", "4,2;4,2;0,2", "4,2;4,2;0,2"]);
        let partial = workload(7, 2, &[5, 0]);
        assert_eq!(Shard { index: 1, count: 2 }.test_plan(&partial), "3,2;0,2");
        assert_eq!(Shard { index: 2, count: 2 }.test_plan(&partial), "2,2;0,2");
    }

    #[test]
    fn more_shards_than_people_is_refused() {
        let w = workload(2, 3, &[6]);
        let error = Shard { index: 1, count: 3 }.check(&w).expect_err("3 > 2");
        assert!(error.to_string().contains("at most 2 shards"), "{error}");
        assert!(Shard { index: 2, count: 2 }.check(&w).is_ok());
    }

    #[test]
    fn start_times_are_read_as_utc_and_bounded() {
        let at = parse_utc("2026-12-04T12:00:00Z").expect("valid");
        assert_eq!(utc(at), "2026-12-04T12:00:00Z");
        let fraction = parse_utc("2024-02-29T23:59:59.5Z").expect("leap day");
        assert_eq!(
            fraction
                .duration_since(UNIX_EPOCH)
                .expect("after")
                .as_millis()
                % 1000,
            500
        );
        for bad in [
            "2026-12-04 12:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "12:00:00Z",
            "2026-12-04T12:00:00+01:00",
            "",
        ] {
            let error = parse_utc(bad).expect_err(bad);
            assert!(error.contains("YYYY-MM-DDTHH:MM:SSZ"), "{bad}: {error}");
        }
        let now = at;
        let past = check_start_at("p", at - Duration::from_secs(12), now).expect_err("past");
        assert!(past.contains("12 s in the past"), "{past}");
        let far = check_start_at("f", at + Duration::from_secs(3 * 3600), now).expect_err("far");
        assert!(
            far.contains("3 h ahead") && far.contains("at most 1 h is"),
            "{far}"
        );
        assert!(check_start_at("ok", at + Duration::from_secs(60), now).is_ok());
        assert!(check_start_at("ok", at + MAX_START_AHEAD, now).is_ok());
    }
}
