//! The worker options file (`docker-worker-opts.sh`) and the image defaults (`default-worker`).
//!
//! Both are read here, by dw-deploy itself, never through a shell: `export KEY="value"` and
//! `KEY=value` lines, comments and blank lines. Anything a shell would expand or execute is an
//! error, as are unknown keys and unfilled placeholders, each reported as `file:line: message`.
//! Error messages never quote a value, so a credential cannot leak through them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One key the docker-worker service reads from its environment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The environment variable name.
    pub name: &'static str,
    /// Whether the options file must set it.
    pub required: bool,
    /// Whether its value is a credential: never printed, never allowed in `default-worker`.
    pub secret: bool,
    /// One line for `--help` style listings.
    pub doc: &'static str,
}

/// Every key the service reads, in the order the example file documents them.
pub const KEYS: &[Key] = &[
    Key {
        name: "TASKCLUSTER_ROOT_URL",
        required: true,
        secret: false,
        doc: "root URL of the Taskcluster deployment, e.g. https://tc.example.com",
    },
    Key {
        name: "TASKCLUSTER_CLIENT_ID",
        required: true,
        secret: true,
        doc: "client id of the worker's Taskcluster credentials",
    },
    Key {
        name: "TASKCLUSTER_ACCESS_TOKEN",
        required: true,
        secret: true,
        doc: "access token of the worker's Taskcluster credentials",
    },
    Key {
        name: "TASKCLUSTER_CERTIFICATE",
        required: false,
        secret: true,
        doc: "certificate (JSON) when the credentials are temporary",
    },
    Key {
        name: "DOCKER_WORKER_OPTS",
        required: false,
        secret: false,
        doc: "extra `docker-worker start` options, e.g. --provisioner-id P --worker-type T",
    },
    Key {
        name: "RUST_LOG",
        required: false,
        secret: false,
        doc: "log filter of the service (tracing env-filter syntax), e.g. info",
    },
];

/// Looks a key up by name.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// One problem in an environment file, located as `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line, absent for whole-file problems (a missing required key).
    pub line: Option<usize>,
    /// What is wrong and what to do; never contains a value from the file.
    pub message: String,
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All the problems found in one file, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OptionsErrors(pub Vec<OptionsError>);

impl fmt::Display for OptionsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One `KEY=value` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key (always one of [`KEYS`]).
    pub key: &'static Key,
    /// The value after quote removal.
    pub value: String,
    /// 1-based line it was set on.
    pub line: usize,
}

/// Which file is being read: they differ in what is required and allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The operator's options file: credentials required.
    Options,
    /// `packer/app/etc/default-worker`: no credentials allowed.
    Defaults,
}

/// A parsed, validated environment file.
#[derive(Debug, Clone)]
pub struct EnvFile {
    /// Assignments in file order, each key at most once.
    pub entries: Vec<Entry>,
}

impl EnvFile {
    /// Reads and validates `path`; errors name the file as `path` displays.
    pub fn load(path: &Path, kind: FileKind) -> Result<EnvFile, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(EnvFile::parse(&path.display().to_string(), &text, kind)?)
    }

    /// Parses and validates the text of a file named `file`.
    pub fn parse(file: &str, text: &str, kind: FileKind) -> Result<EnvFile, OptionsErrors> {
        let mut errors = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut first_line: BTreeMap<&str, usize> = BTreeMap::new();
        let err = |line: Option<usize>, message: String| OptionsError {
            file: file.to_string(),
            line,
            message,
        };
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let (name, value) = match parse_line(raw) {
                Ok(None) => continue,
                Ok(Some(assignment)) => assignment,
                Err(message) => {
                    errors.push(err(Some(line), message));
                    continue;
                }
            };
            let Some(key) = key(&name) else {
                let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
                errors.push(err(
                    Some(line),
                    format!("unknown key `{name}` (known keys: {})", known.join(", ")),
                ));
                continue;
            };
            if let Some(first) = first_line.get(key.name) {
                errors.push(err(
                    Some(line),
                    format!("`{}` is set twice (first on line {first})", key.name),
                ));
                continue;
            }
            first_line.insert(key.name, line);
            if kind == FileKind::Defaults && key.secret {
                errors.push(err(
                    Some(line),
                    format!(
                        "`{}` is a credential: set it in the options file, not in the defaults",
                        key.name
                    ),
                ));
                continue;
            }
            if let Err(message) = check_value(key, &value, kind) {
                errors.push(err(Some(line), message));
                continue;
            }
            entries.push(Entry { key, value, line });
        }
        if kind == FileKind::Options {
            for k in KEYS.iter().filter(|k| k.required) {
                if !first_line.contains_key(k.name) {
                    errors.push(err(
                        None,
                        format!(
                            "`{}` is required ({}); see docker_worker_opts_example.sh",
                            k.name, k.doc
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(EnvFile { entries })
        } else {
            Err(OptionsErrors(errors))
        }
    }

    /// The value set for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key.name == name)
            .map(|e| e.value.as_str())
    }

    /// Values of the credential keys, for redaction of anything dw-deploy relays.
    pub fn secret_values(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.key.secret && !e.value.is_empty())
            .map(|e| e.value.clone())
            .collect()
    }

    /// The file as staged into the image: canonical `KEY="value"` lines that both systemd's
    /// `EnvironmentFile=` and `sh` read the same way; `source` names the file it came from.
    pub fn render(&self, source: &str) -> String {
        let mut out = format!(
            "# docker-worker options, written by dw-deploy from {source}.\n\
             # Read by systemd (EnvironmentFile=) after /etc/default/docker-worker.\n"
        );
        for e in &self.entries {
            out.push_str(e.key.name);
            out.push_str("=\"");
            for c in e.value.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str("\"\n");
        }
        out
    }
}

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but has problems.
    #[error(transparent)]
    Invalid(#[from] OptionsErrors),
}

/// Splits one line into `(key, value)`; `Ok(None)` for blank lines and comments.
fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut rest = line;
    if let Some(after) = rest.strip_prefix("export") {
        if after.starts_with([' ', '\t']) {
            rest = after.trim_start();
        }
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected `KEY=value` or `export KEY=value`".into());
    }
    let after_name = &rest[name_len..];
    let Some(value_text) = after_name.strip_prefix('=') else {
        if after_name.trim_start().starts_with('=') {
            return Err(format!(
                "no spaces allowed around `=` (write `{name}=value`)"
            ));
        }
        return Err(format!("expected `=` after `{name}`"));
    };
    let value = parse_value(name, value_text)?;
    Ok(Some((name.to_string(), value)))
}

/// Parses the value part of an assignment with the subset of shell syntax dw-deploy accepts.
fn parse_value(name: &str, text: &str) -> Result<String, String> {
    let no_shell = "dw-deploy reads this file without a shell";
    let mut chars = text.char_indices().peekable();
    let mut value = String::new();
    let end; // byte offset just after the value
    match chars.peek().map(|&(_, c)| c) {
        Some('"') => {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "`{name}`: unterminated double quote (values must fit on one line)"
                        ))
                    }
                    Some((i, '"')) => {
                        end = i + 1;
                        break;
                    }
                    Some((_, '\\')) => match chars.next() {
                        None => {
                            return Err(format!(
                                "`{name}`: a backslash ends the line; line continuations are not supported"
                            ))
                        }
                        Some((_, c @ ('"' | '\\' | '$' | '`'))) => value.push(c),
                        Some((_, c)) => {
                            value.push('\\');
                            value.push(c);
                        }
                    },
                    Some((_, '$')) => {
                        return Err(format!(
                            "`{name}`: `$` expansion is not supported ({no_shell}); write the value literally or escape it as `\\$`"
                        ))
                    }
                    Some((_, '`')) => {
                        return Err(format!(
                            "`{name}`: command substitution is not supported ({no_shell})"
                        ))
                    }
                    Some((_, c)) => value.push(c),
                }
            }
        }
        Some('\'') => {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "`{name}`: unterminated single quote (values must fit on one line)"
                        ))
                    }
                    Some((i, '\'')) => {
                        end = i + 1;
                        break;
                    }
                    Some((_, c)) => value.push(c),
                }
            }
        }
        _ => {
            let word_end = text.find(|c: char| c.is_whitespace()).unwrap_or(text.len());
            let word = &text[..word_end];
            if let Some(c) = word.chars().find(|c| "$`\\\"';&|<>()".contains(*c)) {
                return Err(format!(
                    "`{name}`: unquoted value contains `{c}`; put the whole value in single quotes ({no_shell})"
                ));
            }
            if word.starts_with('~') {
                return Err(format!(
                    "`{name}`: `~` is not expanded ({no_shell}); write the full path"
                ));
            }
            value.push_str(word);
            end = word_end;
        }
    }
    let trailing = &text[end..];
    let after = trailing.trim_start();
    let comment = after.starts_with('#') && trailing.len() != after.len();
    if !after.is_empty() && !comment {
        return Err(format!(
            "`{name}`: unexpected text after the value; quote the whole value (a comment needs a space before `#`)"
        ));
    }
    Ok(value)
}

/// Whether a value still looks like the example file's placeholder (`<...>`, `changeme`, ...).
pub fn is_placeholder(value: &str) -> bool {
    if let Some(open) = value.find('<') {
        if value[open..].contains('>') {
            return true;
        }
    }
    let v = value.trim().to_ascii_lowercase();
    matches!(
        v.as_str(),
        "changeme" | "change-me" | "change_me" | "todo" | "fixme" | "..." | "xxx" | "replace-me"
    )
}

/// Per-key checks; messages name the key but never its value.
fn check_value(key: &Key, value: &str, kind: FileKind) -> Result<(), String> {
    let name = key.name;
    if is_placeholder(value) {
        let hint = if key.required {
            ""
        } else {
            " (or delete the line: it is optional)"
        };
        return Err(format!(
            "`{name}` still holds a placeholder from the example; fill in the real value{hint}"
        ));
    }
    if value.is_empty() {
        if key.required && kind == FileKind::Options {
            return Err(format!("`{name}` is empty; it is required ({})", key.doc));
        }
        return Ok(());
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!("`{name}` contains a control character"));
    }
    match name {
        "TASKCLUSTER_ROOT_URL"
            if !(value.starts_with("https://") || value.starts_with("http://"))
                || value.contains(char::is_whitespace) =>
        {
            return Err(format!(
                "`{name}` must be an http:// or https:// URL without spaces"
            ));
        }
        "TASKCLUSTER_CLIENT_ID" | "TASKCLUSTER_ACCESS_TOKEN"
            if value.contains(char::is_whitespace) =>
        {
            return Err(format!("`{name}` must not contain spaces"));
        }
        "DOCKER_WORKER_OPTS" => {
            let words = shell_words::split(value)
                .map_err(|_| format!("`{name}`: unbalanced quotes in the options"))?;
            if words.iter().any(|w| {
                w.is_empty() || w.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c))
            }) || value.contains(['"', '\'', '\\'])
            {
                return Err(format!(
                    "`{name}`: systemd splits $DOCKER_WORKER_OPTS on spaces, so options cannot be quoted or contain spaces"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvFile, OptionsErrors> {
        EnvFile::parse("f.sh", text, FileKind::Options)
    }

    const CREDS: &str = "TASKCLUSTER_ROOT_URL=https://tc.example.com\n\
                         TASKCLUSTER_CLIENT_ID=worker/x\n\
                         TASKCLUSTER_ACCESS_TOKEN=tok\n";

    fn first_error(text: &str) -> String {
        parse(text).unwrap_err().0[0].to_string()
    }

    #[test]
    fn accepts_shell_forms() {
        let text = format!(
            "# comment\n\n{CREDS}export DOCKER_WORKER_OPTS=\"--capacity 2 --worker-type t\"  # c\n\
             RUST_LOG='debug,h=info'\n"
        );
        let f = parse(&text).unwrap();
        assert_eq!(
            f.get("DOCKER_WORKER_OPTS"),
            Some("--capacity 2 --worker-type t")
        );
        assert_eq!(f.get("RUST_LOG"), Some("debug,h=info"));
        assert_eq!(f.get("TASKCLUSTER_CLIENT_ID"), Some("worker/x"));
    }

    #[test]
    fn double_quote_escapes() {
        let text = format!("{CREDS}TASKCLUSTER_CERTIFICATE=\"{{\\\"a\\\":\\\"\\$x\\\"}}\"\n");
        let f = parse(&text).unwrap();
        assert_eq!(f.get("TASKCLUSTER_CERTIFICATE"), Some("{\"a\":\"$x\"}"));
        let rendered = f.render("f.sh");
        assert!(rendered.contains("TASKCLUSTER_CERTIFICATE=\"{\\\"a\\\":\\\"\\$x\\\"}\"\n"));
    }

    #[test]
    fn errors_have_lines() {
        assert_eq!(
            first_error(&format!("{CREDS}\nFOO=1\n")),
            "f.sh:5: unknown key `FOO` (known keys: TASKCLUSTER_ROOT_URL, TASKCLUSTER_CLIENT_ID, \
             TASKCLUSTER_ACCESS_TOKEN, TASKCLUSTER_CERTIFICATE, DOCKER_WORKER_OPTS, RUST_LOG)"
        );
        assert!(first_error(&format!("{CREDS}RUST_LOG = x\n")).starts_with("f.sh:4: no spaces"));
        assert!(first_error(&format!("{CREDS}RUST_LOG=\"$HOME\"\n")).contains("`$` expansion"));
        assert!(first_error(&format!("{CREDS}RUST_LOG=\"abc\n")).contains("unterminated double"));
        assert!(first_error(&format!("{CREDS}RUST_LOG='abc\n")).contains("unterminated single"));
        assert!(first_error(&format!("{CREDS}RUST_LOG=a b\n")).contains("unexpected text"));
        assert!(first_error(&format!("{CREDS}RUST_LOG=$(id)\n")).contains("unquoted value"));
        assert!(first_error(&format!("{CREDS}RUST_LOG=`id`\n")).contains("unquoted value"));
        assert!(first_error(&format!("{CREDS}echo hi\n")).contains("expected `=`"));
        assert!(first_error(&format!("{CREDS}RUST_LOG=a\nRUST_LOG=b\n"))
            .ends_with("`RUST_LOG` is set twice (first on line 4)"));
        assert!(first_error(&format!(
            "{CREDS}DOCKER_WORKER_OPTS=\"--worker-type 'a b'\"\n"
        ))
        .contains("systemd splits"));
    }

    #[test]
    fn placeholders_and_required() {
        let e = first_error("TASKCLUSTER_ROOT_URL=https://tc.example.com\nTASKCLUSTER_CLIENT_ID=\"<client-id>\"\nTASKCLUSTER_ACCESS_TOKEN=x\n");
        assert!(e.starts_with("f.sh:2: `TASKCLUSTER_CLIENT_ID` still holds a placeholder"));
        let e = parse("TASKCLUSTER_ROOT_URL=https://tc.example.com\n").unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert!(e.0[0]
            .to_string()
            .starts_with("f.sh: `TASKCLUSTER_CLIENT_ID` is required"));
    }

    #[test]
    fn defaults_reject_credentials() {
        let e =
            EnvFile::parse("d", "TASKCLUSTER_ACCESS_TOKEN=x\n", FileKind::Defaults).unwrap_err();
        assert!(e.to_string().contains("is a credential"));
        assert!(EnvFile::parse("d", "RUST_LOG=info\n", FileKind::Defaults).is_ok());
    }

    #[test]
    fn errors_never_echo_values() {
        let e = first_error(&format!("{CREDS}TASKCLUSTER_CERTIFICATE=\"s3cr3t$x\"\n"));
        assert!(!e.contains("s3cr3t"));
    }
}
