//! Target files (`targets/NAME.toml`): an app the harness did not build,
//! speaking the observable contract (docs/architecture.md, "The contract
//! between harness and app"). Either how to start it (a command, its folder
//! and environment, with placeholders the harness fills per instance), or
//! the base URLs of instances running elsewhere. Read with every mistake at
//! its `file:line:column`, as scenario files are.
//!
//! The format (every key, the placeholders, examples) is described once, in
//! docs/targets.md; keep that page in step with `RawTarget` below and
//! [`crate::model::app::PLACEHOLDERS`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use app::topology::{StoreNeeds, Topology};
use serde::Deserialize;
use toml::Spanned;

use super::capacity::{INSTANCES_REASON, MAX_INSTANCES};
use super::names;
use super::source::{self, ScenarioError, Source};
use super::time::Offset;
use crate::model::app::{AppUnderTest, ContractSettings, LaunchSpec, PLACEHOLDERS, RemoteSpec};
use crate::model::ids::StoreKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Option<Spanned<String>>,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    workdir: Option<Spanned<String>>,
    install: Option<Spanned<Vec<Spanned<String>>>>,
    ready: Option<Spanned<String>>,
    #[serde(default)]
    stores: Vec<StoreKind>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    instances: Option<Spanned<Vec<Spanned<String>>>>,
    idp: Option<Spanned<String>>,
    session_cookie: Option<String>,
    renewal_offset: Option<Offset>,
    idle_timeout: Option<Offset>,
    absolute_timeout: Option<Offset>,
    models: Option<Spanned<String>>,
}

/// Reads a target file.
pub fn from_file(path: &Path) -> Result<AppUnderTest, ScenarioError> {
    let text = source::read(path)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    parse(&text, &path.display().to_string(), folder)
}

/// Reads `text` as the target file `name` in `folder`.
pub fn parse(text: &str, name: &str, folder: &Path) -> Result<AppUnderTest, ScenarioError> {
    let source = Source::new(text, name);
    let file = name.to_owned();
    let raw: RawTarget = toml::from_str(text).map_err(|e| source.toml_error(&e, 0, &(0..0)))?;
    let whole = 0..0;
    let name = raw
        .name
        .as_ref()
        .map(|n| n.get_ref().trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| source.error(&whole, "`name` is missing (e.g. name = \"my-app\")"))?;
    if let (Some(spanned), Err(why)) = (&raw.name, names::check(&name)) {
        return Err(source.error(&spanned.span(), why));
    }
    let models = match &raw.models {
        Some(models) if Topology::PRESETS.contains(&models.get_ref().as_str()) => {
            Some(models.get_ref().clone())
        }
        Some(models) => {
            return Err(source.error(
                &models.span(),
                format!(
                    "`models` names one of the reference app's topologies ({}), not {:?}",
                    Topology::PRESETS.join(", "),
                    models.get_ref()
                ),
            ));
        }
        None => None,
    };
    let contract = ContractSettings {
        session_cookie: raw
            .session_cookie
            .clone()
            .unwrap_or_else(|| ContractSettings::default().session_cookie),
        renewal_offset: raw
            .renewal_offset
            .map_or(ContractSettings::default().renewal_offset, |o| o.0),
        idle_timeout: raw
            .idle_timeout
            .map_or(ContractSettings::default().idle_timeout, |o| o.0),
        absolute_timeout: raw.absolute_timeout.map(|o| o.0),
        models,
        file: Some(file),
        description: opening_comment(text),
    };
    match (raw.command, raw.instances) {
        (Some(_), Some(instances)) => Err(source.error(
            &instances.span(),
            "give either `command` (the harness starts the app) or `instances` (it runs elsewhere), not both",
        )),
        (None, None) => Err(source.error(
            &whole,
            "say how to reach the app: `command = [...]` to start it, or `instances = [\"http://...\"]`",
        )),
        (None, Some(instances)) => {
            for key in [("workdir", raw.workdir.as_ref().map(Spanned::span)), ("ready", raw.ready.as_ref().map(Spanned::span))] {
                if let (name, Some(span)) = key {
                    return Err(source.error(&span, format!("`{name}` goes with `command`")));
                }
            }
            let mut urls: Vec<String> = Vec::new();
            for url in instances.get_ref() {
                let parsed = http_url(url, &source)?;
                if let Some(first) = urls.iter().position(|u| same_url(u, &parsed)) {
                    return Err(source.error(
                        &url.span(),
                        format!(
                            "`instances` names {parsed} twice (app-{} and app-{}): each instance once",
                            first + 1,
                            urls.len() + 1
                        ),
                    ));
                }
                urls.push(parsed);
            }
            if urls.is_empty() {
                return Err(source.error(&instances.span(), "`instances` names no instance"));
            }
            if urls.len() > MAX_INSTANCES {
                return Err(source.error(
                    &instances.span(),
                    format!(
                        "`instances` names {} instances, above the {MAX_INSTANCES} a run may have: {INSTANCES_REASON}",
                        urls.len()
                    ),
                ));
            }
            let idp = raw.idp.ok_or_else(|| {
                source.error(
                    &instances.span(),
                    "`idp` is missing: the mock IdP these instances sign in with (e.g. idp = \"http://10.0.0.9:9400\")",
                )
            })?;
            Ok(AppUnderTest::Remote(RemoteSpec {
                name,
                instances: urls,
                idp: http_url(&idp, &source)?,
                contract,
            }))
        }
        (Some(command), None) => {
            if let Some(idp) = &raw.idp {
                return Err(source.error(
                    &idp.span(),
                    "`idp` goes with `instances`; the harness starts its own IdP for a command",
                ));
            }
            let stores = StoreNeeds {
                redis: raw.stores.contains(&StoreKind::Redis),
                postgres: raw.stores.contains(&StoreKind::Postgres),
                redis_cluster: raw.stores.contains(&StoreKind::RedisCluster),
            };
            let words: Vec<String> = command
                .get_ref()
                .iter()
                .map(|word| {
                    placeholders(word, &source, Some(stores)).map(|()| word.get_ref().clone())
                })
                .collect::<Result<_, _>>()?;
            if words.is_empty() {
                return Err(source.error(&command.span(), "`command` is empty"));
            }
            for value in raw.env.values() {
                placeholders(value, &source, Some(stores))?;
            }
            let workdir = match &raw.workdir {
                Some(dir) => {
                    let resolved = folder.join(dir.get_ref());
                    if !resolved.is_dir() {
                        return Err(source.error(
                            &dir.span(),
                            format!("`workdir` {} is not a folder", resolved.display()),
                        ));
                    }
                    resolved
                }
                None => folder.to_owned(),
            };
            let ready = raw
                .ready
                .map(|r| {
                    if r.get_ref().starts_with('/') {
                        Ok(r.into_inner())
                    } else {
                        Err(source.error(&r.span(), "`ready` is a path, starting with /"))
                    }
                })
                .transpose()?
                .unwrap_or_else(|| "/healthz".into());
            let install = match raw.install {
                Some(install) if install.get_ref().is_empty() => {
                    return Err(source.error(&install.span(), "`install` is empty"));
                }
                Some(install) => {
                    let mut words = Vec::new();
                    for word in install.into_inner() {
                        placeholders(&word, &source, None)?;
                        words.push(word.into_inner());
                    }
                    Some(words)
                }
                None => None,
            };
            Ok(AppUnderTest::Launched(LaunchSpec {
                name,
                command: words,
                workdir,
                install,
                ready,
                stores,
                env: raw
                    .env
                    .into_iter()
                    .map(|(k, v)| (k, v.into_inner()))
                    .collect(),
                contract,
            }))
        }
    }
}

/// The comment lines a file opens with, as one paragraph: what its author
/// says the app is (`None` when it opens with none).
pub fn opening_comment(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .take_while(|line| line.starts_with('#'))
        .map(|line| line.trim_start_matches('#').trim())
        .filter(|line| !line.is_empty())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Checks the `{name}` placeholders of one value, each at the place it
/// stands: closed, one the harness fills, and a store's URL only when
/// `stores` names that store. `stores` is `None` for `install`, which runs
/// before any instance and is not filled: no placeholder goes there.
fn placeholders(
    value: &Spanned<String>,
    source: &Source<'_>,
    stores: Option<StoreNeeds>,
) -> Result<(), ScenarioError> {
    let text = value.get_ref();
    let at = |index: usize| inside(value, source, index);
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| i + from) {
        let after = &text[open + 1..];
        let close = after.find('}');
        let nested = after.find('{');
        let Some(close) = close.filter(|&c| nested.is_none_or(|n| c < n)) else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            return Err(source.error(
                &at(open),
                format!("`{{{name}` is not closed: write `{{{name}}}`"),
            ));
        };
        let name = &after[..close];
        let Some(stores) = stores else {
            return Err(source.error(
                &at(open),
                format!(
                    "`install` runs once, before any instance, and is not filled: {{{name}}} has no value there"
                ),
            ));
        };
        if !PLACEHOLDERS.contains(&name) {
            return Err(source.error(
                &at(open),
                format!(
                    "unknown placeholder {{{name}}}; the harness fills {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ),
            ));
        }
        let missing = match name {
            "redis_url" if !stores.redis => Some("redis"),
            "database_url" if !stores.postgres => Some("postgres"),
            "redis_cluster_urls" if !stores.redis_cluster => Some("redis-cluster"),
            _ => None,
        };
        if let Some(store) = missing {
            return Err(source.error(
                &at(open),
                format!(
                    "{{{name}}} has a value only when the harness provides {store}: add \"{store}\" to `stores`"
                ),
            ));
        }
        from = open + 1 + close + 1;
    }
    Ok(())
}

/// Where byte `index` of a string value stands in the file: exact for a
/// string written without escapes, else the string's start.
fn inside(value: &Spanned<String>, source: &Source<'_>, index: usize) -> Range<usize> {
    let span = value.span();
    let raw = source.text.get(span.clone()).unwrap_or_default();
    let plain = raw.len() == value.get_ref().len() + 2
        && (raw.starts_with('"') || raw.starts_with('\''))
        && raw.get(1..raw.len() - 1) == Some(value.get_ref().as_str());
    if plain {
        let at = span.start + 1 + index;
        at..at
    } else {
        span
    }
}

/// Whether two instance URLs name the same instance (case of the scheme and
/// host, a default port and a trailing `/` aside).
fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/'),
        _ => a == b,
    }
}

fn http_url(value: &Spanned<String>, source: &Source<'_>) -> Result<String, ScenarioError> {
    let span: Range<usize> = value.span();
    match url::Url::parse(value.get_ref()) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => {
            Ok(value.get_ref().trim_end_matches('/').to_owned())
        }
        Ok(_) => Err(source.error(
            &span,
            "an http:// URL, please (the harness speaks plain HTTP to apps)",
        )),
        Err(e) => Err(source.error(&span, format!("not a URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(text, "t.toml", Path::new("."))
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn a_launched_target_reads_with_defaults() {
        let target = parse(
            "name = \"x\"\ncommand = [\"node\", \"server.js\"]\nstores = [\"redis\"]\n[env]\nPORT = \"{port}\"\n",
            "t.toml",
            Path::new("."),
        )
        .expect("valid");
        let AppUnderTest::Launched(spec) = target else {
            panic!("launched");
        };
        assert_eq!(spec.command, ["node", "server.js"]);
        assert_eq!(spec.ready, "/healthz");
        assert!(spec.stores.redis && !spec.stores.postgres);
        assert_eq!(spec.env["PORT"], "{port}");
        assert_eq!(
            spec.contract,
            ContractSettings {
                file: Some("t.toml".into()),
                ..ContractSettings::default()
            },
            "defaults, and the file it came from"
        );
    }

    #[test]
    fn mistakes_in_target_files_are_refused_at_their_place() {
        let cases = [
            ("command = [\"x\"]\n", "t.toml:1:1", "`name` is missing"),
            ("name = \"x\"\n", "t.toml:1:1", "say how to reach the app"),
            (
                "name = \"x\"\ncommand = []\n",
                "t.toml:2:11",
                "`command` is empty",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\ninstances = [\"http://h\"]\n",
                "t.toml:3:13",
                "not both",
            ),
            (
                "name = \"x\"\ncommand = [\"a\", \"{prot}\"]\n",
                "t.toml:2:18",
                "unknown placeholder {prot}",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\n[env]\nQ = \"{nope}\"\n",
                "t.toml:4:6",
                "{nope}",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\n[env]\nP = \"--port={port\"\n",
                "t.toml:4:13",
                "`{port` is not closed",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\n[env]\nDB = \"{database_url}\"\n",
                "t.toml:4:7",
                "add \"postgres\" to `stores`",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\ninstall = [\"npm\", \"{bogus}\"]\n",
                "t.toml:3:20",
                "`install` runs once",
            ),
            (
                "name = \"x/../../escaped\"\ncommand = [\"a\"]\n",
                "t.toml:1:8",
                "cannot be a name",
            ),
            (
                "name = \"x\"\ninstances = [\"http://h:1\", \"HTTP://H:1/\"]\nidp = \"http://i\"\n",
                "t.toml:2:28",
                "twice",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\nworkdir = \"no/such/folder\"\n",
                "t.toml:3:11",
                "is not a folder",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\nready = \"healthz\"\n",
                "t.toml:3:9",
                "starting with /",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\nstores = [\"mysql\"]\n",
                "t.toml:3:11",
                "mysql",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\ncolour = \"blue\"\n",
                "t.toml:3:1",
                "unknown field `colour`",
            ),
            (
                "name = \"x\"\ninstances = [\"http://h:1\"]\n",
                "t.toml:2:13",
                "`idp` is missing",
            ),
            (
                "name = \"x\"\ninstances = [\"ftp://h\"]\nidp = \"http://i\"\n",
                "t.toml:2:14",
                "http://",
            ),
            (
                "name = \"x\"\ninstances = []\nidp = \"http://i\"\n",
                "t.toml:2:13",
                "names no instance",
            ),
            (
                "name = \"x\"\ninstances = [\"http://h\"]\nidp = \"http://i\"\nready = \"/x\"\n",
                "t.toml:4:9",
                "goes with `command`",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\nrenewal_offset = \"soon\"\n",
                "t.toml:3:18",
                "is not a duration",
            ),
            (
                "name = \"x\"\ncommand = [\"a\"]\nmodels = \"option5\"\n",
                "t.toml:3:10",
                "`models` names one of the reference app's topologies",
            ),
        ];
        for (text, place, reason) in cases {
            let message = error(text);
            assert!(
                message.starts_with(place) && message.contains(reason),
                "{text:?}: wanted {place} ... {reason:?}, got {message}"
            );
        }
    }

    #[test]
    fn the_shipped_express_targets_read() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets/express-msal");
        for option in 1..=4 {
            let path = folder.join(format!("option{option}.toml"));
            let target = from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(target.name(), format!("express-msal-option{option}"));
            assert!(matches!(target, AppUnderTest::Launched(_)));
            // Its report sits beside the reference app's same option.
            let models = target.contract().and_then(|c| c.models.as_deref());
            assert_eq!(models, Some(format!("option{option}").as_str()));
            // And says what it is, as its opening comment does.
            let description = target.contract().and_then(|c| c.description.as_deref());
            assert!(
                description.is_some_and(|d| d.starts_with("What this target is: the seed's stack")),
                "{description:?}"
            );
        }
    }

    #[test]
    fn the_opening_comment_is_the_description() {
        assert_eq!(
            opening_comment("# An app.\n#\n#   Its second line.\nname = \"x\"\n# not this\n")
                .as_deref(),
            Some("An app. Its second line.")
        );
        assert_eq!(opening_comment("name = \"x\"\n# later\n"), None);
        assert_eq!(opening_comment("#\n\n# after a blank line\n"), None);
    }
}
