//! The cache tier's copies in Redis: what a copy holds, how it is read, and
//! the scripts that write one only over an older one.
//!
//! A copy is a hash under `{prefix}{key}`: the record's version `v` (the
//! durable tier's), its data `d`, and the coherence generation `g` it was
//! made under ([`super::coherence`]); a tombstone has `t` instead of `d`
//! and stands for a delete (or an expiry) at version `v`. A write lands only
//! over an older version, or the same version under an older generation, so
//! a copy made from an older read never replaces a newer one, and a late
//! copy of a deleted record cannot bring it back while its tombstone lives.

use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;

use crate::store::Record;
use crate::store::redis_link::RedisLink;
use crate::store::redis_target::RUN_ID_SCRIPT;

/// A copy as found in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Copy {
    Live {
        record: Record,
        generation: u64,
    },
    Tombstone {
        version: u64,
        generation: u64,
    },
    /// No copy (or one that does not parse: as good as none).
    Missing,
}

/// One write to a copy.
#[derive(Clone, Debug)]
pub enum CopyWrite<'a> {
    /// The record at `version`, unless the copy is at least as new.
    Live {
        key: &'a str,
        data: &'a [u8],
        version: u64,
        ttl: Option<Duration>,
        generation: u64,
        /// Also over a copy of the same version (whose data the reader
        /// could not use: it did not decrypt).
        replace_same: bool,
    },
    /// Deleted (or expired) at `version`; `None`: one past whatever copy is there.
    Tombstone {
        key: &'a str,
        version: Option<u64>,
        generation: u64,
    },
    /// A new TTL for a live copy (a tombstone keeps its own).
    Expire { key: &'a str, ttl: Duration },
}

/// `KEYS[1]`; `ARGV = version, data, ttl_ms (0: none), generation,
/// replace_same (0|1)`; 1 if written.
const WRITE_LIVE: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'g')
local v, g = tonumber(cur[1]), tonumber(cur[2]) or 0
local nv, ng = tonumber(ARGV[1]), tonumber(ARGV[4])
if v and (v > nv or (v == nv and g >= ng and ARGV[5] == '0')) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 'g', ARGV[4])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// `KEYS[1]`; `ARGV = version (0: one past the copy's), ttl_ms, generation`; 1 if written.
const WRITE_TOMBSTONE: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'g')
local v, g = tonumber(cur[1]), tonumber(cur[2]) or 0
local nv, ng = tonumber(ARGV[1]), tonumber(ARGV[3])
if nv == 0 then
  if not v then return 0 end
  nv = v + 1
end
if v and (v > nv or (v == nv and g >= ng)) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', nv, 't', 1, 'g', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// `KEYS[1]`; `ARGV = ttl_ms`: renews a live copy's TTL, never a tombstone's.
const EXPIRE_LIVE: &str = r"
if redis.call('HEXISTS', KEYS[1], 't') == 1 then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
";

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// Copies of one namespace's records, under a key prefix, on one link.
pub struct Copies {
    link: Arc<RedisLink>,
    prefix: String,
    tombstone_ttl: Duration,
}

type Fields = (
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
);

impl Copies {
    pub fn new(link: Arc<RedisLink>, prefix: &str, tombstone_ttl: Duration) -> Self {
        Self {
            link,
            prefix: prefix.to_owned(),
            tombstone_ttl,
        }
    }

    pub fn link(&self) -> &Arc<RedisLink> {
        &self.link
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Every key's copy in one pipelined round trip, with the `run_id` of
    /// the server that answered.
    pub async fn read(&self, keys: &[&str]) -> RedisResult<(Vec<Copy>, Arc<str>)> {
        let mut pipe = redis::pipe();
        for key in keys {
            let key = self.key(key);
            pipe.cmd("HMGET")
                .arg(&key)
                .arg("v")
                .arg("d")
                .arg("g")
                .arg("t")
                .cmd("PTTL")
                .arg(&key);
        }
        let Some(first) = keys.first().filter(|_| self.link.is_cluster()) else {
            let (replies, server) = self
                .link
                .run(|mut c| async move { pipe.query_async::<Vec<(Fields, i64)>>(&mut c).await })
                .await?;
            return Ok((replies.into_iter().map(parse).collect(), server));
        };
        // On a cluster the node serving the keys' slot (a session's keys
        // share one) names itself in the same round trip.
        pipe.cmd("EVAL")
            .arg(RUN_ID_SCRIPT)
            .arg(1)
            .arg(self.key(first));
        let (mut replies, _) = self
            .link
            .run(|mut c| async move { pipe.query_async::<Vec<redis::Value>>(&mut c).await })
            .await?;
        let server: String = match replies.pop() {
            Some(value) => redis::from_redis_value(value)?,
            None => return Err(no_node_name()),
        };
        let replies: Vec<(Fields, i64)> = redis::from_redis_value(redis::Value::Array(replies))?;
        Ok((replies.into_iter().map(parse).collect(), server.into()))
    }

    /// Every write in one pipelined round trip. `Ok` means each copy now
    /// holds at least what was written (a newer copy may have been there).
    pub async fn write(&self, writes: &[CopyWrite<'_>]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        for write in writes {
            // EVAL with the source: Redis caches the compiled script by its
            // hash, and no NOSCRIPT can follow a restart or SCRIPT FLUSH.
            let eval = |script: &str, key: &str| {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(script).arg(1).arg(self.key(key));
                cmd
            };
            let cmd = match *write {
                CopyWrite::Live {
                    key,
                    data,
                    version,
                    ttl,
                    generation,
                    replace_same,
                } => {
                    let mut cmd = eval(WRITE_LIVE, key);
                    cmd.arg(version)
                        .arg(data)
                        .arg(ttl.map_or(0, millis))
                        .arg(generation)
                        .arg(u8::from(replace_same));
                    cmd
                }
                CopyWrite::Tombstone {
                    key,
                    version,
                    generation,
                } => {
                    let mut cmd = eval(WRITE_TOMBSTONE, key);
                    cmd.arg(version.unwrap_or(0))
                        .arg(millis(self.tombstone_ttl))
                        .arg(generation);
                    cmd
                }
                CopyWrite::Expire { key, ttl } => {
                    let mut cmd = eval(EXPIRE_LIVE, key);
                    cmd.arg(millis(ttl));
                    cmd
                }
            };
            pipe.add_command(cmd).ignore();
        }
        self.link
            .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
            .map(drop)
    }
}

fn no_node_name() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "the cluster node did not name itself",
    ))
}

/// A copy from its fields; anything malformed is a miss (the durable tier
/// is read instead), never an error.
fn parse(((version, data, generation, tombstone), pttl): (Fields, i64)) -> Copy {
    let Some(version) = version.and_then(|v| v.parse::<u64>().ok()) else {
        return Copy::Missing;
    };
    let generation = generation.and_then(|g| g.parse().ok()).unwrap_or(0);
    match (data, tombstone) {
        (_, Some(_)) => Copy::Tombstone {
            version,
            generation,
        },
        (Some(data), None) => Copy::Live {
            record: Record {
                data,
                version,
                ttl: (pttl > 0).then(|| Duration::from_millis(pttl as u64)),
            },
            generation,
        },
        (None, None) => Copy::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Option<&str>, d: Option<&[u8]>, g: Option<&str>, t: Option<&str>) -> Fields {
        (
            v.map(str::to_owned),
            d.map(<[u8]>::to_vec),
            g.map(str::to_owned),
            t.map(str::to_owned),
        )
    }

    #[test]
    fn copies_parse_and_malformed_ones_are_misses() {
        assert_eq!(
            parse((fields(Some("3"), Some(b"x"), Some("7"), None), 1500)),
            Copy::Live {
                record: Record {
                    data: b"x".to_vec(),
                    version: 3,
                    ttl: Some(Duration::from_millis(1500)),
                },
                generation: 7,
            }
        );
        assert_eq!(
            parse((fields(Some("4"), None, Some("7"), Some("1")), 100)),
            Copy::Tombstone {
                version: 4,
                generation: 7
            }
        );
        // No generation: made under none, trusted under none.
        assert_eq!(
            parse((fields(Some("4"), Some(b"x"), None, None), -1)),
            Copy::Live {
                record: Record {
                    data: b"x".to_vec(),
                    version: 4,
                    ttl: None,
                },
                generation: 0,
            }
        );
        for malformed in [
            fields(None, None, None, None),
            fields(Some("x"), Some(b"x"), Some("1"), None),
            fields(Some("4"), None, Some("1"), None),
            fields(None, Some(b"x"), Some("1"), None),
        ] {
            assert_eq!(parse((malformed, -2)), Copy::Missing);
        }
    }
}
