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
    }
}
