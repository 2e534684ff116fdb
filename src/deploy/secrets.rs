//! Redaction of credential values from everything dw-deploy relays (packer's output, errors).

use std::borrow::Cow;

/// The text that replaces a credential value.
pub const REDACTED: &str = "[redacted]";

/// Credential values that must never reach the terminal.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// Remembers `values` (empty ones are ignored), longest first so overlaps redact fully.
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets { values }
    }

    /// Also redacts the values as packer's `-machine-readable` output escapes them (commas as
    /// `%!(PACKER_COMMA)`, line breaks as `\n`), so raw lines are covered too.
    pub fn with_packer_escapes(self) -> Secrets {
        let escaped = self.values.iter().map(|v| {
            v.replace(',', "%!(PACKER_COMMA)")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
        });
        Secrets::new(self.values.clone().into_iter().chain(escaped))
    }

    /// `text` with every credential value replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), REDACTED));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_longest_first() {
        let s = Secrets::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(s.redact("x abcdef abc"), "x [redacted] [redacted]");
        assert!(matches!(s.redact("nothing"), Cow::Borrowed(_)));
        let s = Secrets::new(["{\"a\",\"b\"}".to_string()]).with_packer_escapes();
        assert_eq!(s.redact("x {\"a\"%!(PACKER_COMMA)\"b\"}"), "x [redacted]");
    }
}
