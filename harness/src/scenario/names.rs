//! Names that become part of file names: a target's or a topology's `name`
//! is checked (a short, plain set of characters), and anything else that
//! lands in a file name (a scenario file's stem) is made safe, so no name
//! can lead a results file, a history or a report out of its folder.

/// The longest name a target or topology may have.
pub const MAX_NAME: usize = 64;

/// What a name may be made of, for messages.
pub const ALLOWED: &str =
    "letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 characters";

/// Why `name` cannot name a target or topology, if it cannot.
pub fn check(name: &str) -> Result<(), String> {
    let first_plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME || !plain || !first_plain {
        return Err(format!(
            "{name:?} cannot be a name: it becomes part of file names, so use {ALLOWED}"
        ));
    }
    Ok(())
}

/// `text` as a plain file-name part: every other character becomes `_`, at
/// most [`MAX_NAME`] characters, never empty nor starting with a dot.
pub fn file_safe(text: &str) -> String {
    let mut safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect();
    if !safe.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        safe.insert(0, 'x');
        safe.truncate(MAX_NAME);
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_paths_do_not() {
        for good in ["option4", "express-msal-option4", "redis_only.v2", "A1"] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "x/../../escaped",
            "..",
            ".hidden",
            "-flag",
            "my app",
            "a\\b",
            "é",
            "x\0y",
            &"a".repeat(65),
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn anything_becomes_a_safe_file_name_part() {
        assert_eq!(file_safe("smoke"), "smoke");
        assert_eq!(file_safe("../../x"), "x.._.._x");
        assert_eq!(file_safe(""), "x");
        assert_eq!(file_safe(".."), "x..");
        assert_eq!(file_safe("a b/c"), "a_b_c");
        for text in ["../..", "/etc/passwd", "a\nb", &"z".repeat(200)] {
            let safe = file_safe(text);
            assert_eq!(check(&safe), Ok(()), "{safe}");
            assert!(!safe.contains('/') && !safe.starts_with('.'), "{safe}");
        }
    }
}
