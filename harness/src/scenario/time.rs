//! Durations as scenario files write them (`"500ms"`, `"5s"`, `"2m"`), bounded
//! so that no point of a run's timeline can overflow; and UTC moments as
//! results and `--start-at` write them.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The longest duration a scenario may name: a month of soak is plenty.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// A duration read from a human-readable string, at most [`MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset(pub Duration);

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(OffsetVisitor)
    }
}

struct OffsetVisitor;

impl Visitor<'_> for OffsetVisitor {
    type Value = Offset;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"500ms\" or \"5s\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Offset, E> {
        let duration = humantime_serde::re::humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "{text:?} is not a duration: {e} (write e.g. \"500ms\", \"5s\")"
            ))
        })?;
        if duration > MAX {
            return Err(E::custom(format!(
                "{text:?} is longer than the {} days a scenario may span",
                MAX.as_secs() / 86400
            )));
        }
        Ok(Offset(duration))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix milliseconds (UTC).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc {
        d: Offset,
    }

    fn read(text: &str) -> Result<Duration, String> {
        toml::from_str::<Doc>(text)
            .map(|doc| doc.d.0)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn human_durations_read_and_huge_or_wrong_ones_are_refused() {
        assert_eq!(read("d = \"1m 30s\""), Ok(Duration::from_secs(90)));
        assert_eq!(read("d = \"250ms\""), Ok(Duration::from_millis(250)));
        assert!(read("d = \"soon\"").is_err_and(|e| e.contains("\"soon\"")));
        assert!(read("d = 5").is_err_and(|e| e.contains("duration string")));
        assert!(read("d = \"10000000000000000000s\"").is_err());
        assert!(read("d = \"18446744073709551615s\"").is_err_and(|e| e.contains("30 days")));
        assert!(read("d = \"31days\"").is_err_and(|e| e.contains("30 days")));
    }
}
