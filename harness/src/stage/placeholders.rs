//! A target's command and environment filled in per instance: the
//! `{name}` placeholders of [`crate::model::app::PLACEHOLDERS`].

use std::collections::BTreeMap;

use super::StageError;

/// Fills `{name}` placeholders from `values`; a name without a value (a
/// store the stack runs without) is an error that names it.
pub fn fill(template: &str, values: &BTreeMap<&str, String>) -> Result<String, StageError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = &after[..close];
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => {
                return Err(StageError::NotAvailable(format!(
                    "the target asks for {{{name}}}, which this stack has no value for"
                )));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_a_missing_one_is_named() {
        let values = BTreeMap::from([
            ("port", "8081".to_owned()),
            ("instance", "app-2".to_owned()),
        ]);
        assert_eq!(
            fill("http://127.0.0.1:{port}/{instance}", &values).expect("fills"),
            "http://127.0.0.1:8081/app-2"
        );
        assert_eq!(
            fill("no placeholders", &values).expect("fills"),
            "no placeholders"
        );
        let missing = fill("{redis_url}", &values).expect_err("no Redis here");
        assert!(missing.to_string().contains("{redis_url}"), "{missing}");
    }
}
