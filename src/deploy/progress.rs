//! Packer's `-machine-readable` output, shown to a person: a spinner with the current step and
//! the elapsed time, packer's own messages printed above it, the artifact ids collected.
//! Every line passes through [`Secrets::redact`] before it is printed.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::secrets::Secrets;

/// One line of `packer -machine-readable` output: `timestamp,target,type,data...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineLine {
    /// The build the line is about (`amazon-ebs`), empty for global lines.
    pub target: String,
    /// The message type (`ui`, `artifact`, `error-count`, ...).
    pub kind: String,
    /// The remaining fields, unescaped.
    pub data: Vec<String>,
}

/// Parses one machine-readable line; `None` if it is not one (packer also prints plain lines).
pub fn parse_machine_line(line: &str) -> Option<MachineLine> {
    let mut fields = line.split(',');
    let timestamp = fields.next()?;
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let target = unescape(fields.next()?);
    let kind = unescape(fields.next()?);
    if kind.is_empty() {
        return None;
    }
    let data = fields.map(unescape).collect();
    Some(MachineLine { target, kind, data })
}

/// Undoes packer's escaping of commas and line breaks inside a field.
fn unescape(field: &str) -> String {
    field
        .replace("%!(PACKER_COMMA)", ",")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
}

/// An artifact packer reported, e.g. `amazon-ebs` / `us-west-2:ami-0123`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The build that produced it.
    pub builder: String,
    /// Its id (for amazon-ebs: `region:ami-id`, comma-separated for several regions).
    pub id: String,
}

/// The live display of one packer run.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    verbose: bool,
    secrets: Secrets,
    artifacts: Vec<Artifact>,
}

impl Progress {
    /// Starts the spinner on stderr (hidden when stderr is not a terminal).
    pub fn start(verbose: bool, secrets: Secrets) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.green} [{elapsed_precise}] packer: {wide_msg}")
                .expect("static template is valid"),
        );
        bar.set_message("starting");
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar,
            verbose,
            secrets,
            artifacts: Vec::new(),
        }
    }

    /// Handles one line of packer's standard output.
    pub fn stdout_line(&mut self, line: &str) {
        let line = self.secrets.redact(line).into_owned();
        if self.verbose {
            self.bar.suspend(|| println!("{line}"));
        }
        let Some(m) = parse_machine_line(&line) else {
            if !self.verbose {
                self.bar.suspend(|| println!("{line}"));
            }
            return;
        };
        match (m.kind.as_str(), m.data.first().map(String::as_str)) {
            ("ui", Some(level @ ("say" | "message" | "error"))) => {
                let text = m.data[1..].join(",");
                let text = self.secrets.redact(&text);
                let text = text.trim_end_matches(['\n', '\r']);
                if level == "say" {
                    if let Some(step) = text.trim_start_matches('\n').strip_prefix("==> ") {
                        let step = step.lines().next().unwrap_or_default().to_string();
                        self.bar.set_message(step);
                    }
                }
                if !self.verbose {
                    if level == "error" {
                        self.bar.suspend(|| eprintln!("{text}"));
                    } else {
                        self.bar.suspend(|| println!("{text}"));
                    }
                }
            }
            ("artifact", Some(_)) if m.data.get(1).map(String::as_str) == Some("id") => {
                if let Some(id) = m.data.get(2) {
                    self.artifacts.push(Artifact {
                        builder: m.target.clone(),
                        id: id.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Handles one line of packer's standard error (printed as is, redacted).
    pub fn stderr_line(&mut self, line: &str) {
        let line = self.secrets.redact(line).into_owned();
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Prints a note of dw-deploy's own above the spinner.
    pub fn note(&self, text: &str) {
        self.bar.suspend(|| eprintln!("dw-deploy: {text}"));
    }

    /// Stops the spinner and returns the artifacts packer reported and the elapsed time.
    pub fn finish(self) -> (Vec<Artifact>, Duration) {
        let elapsed = self.bar.elapsed();
        self.bar.finish_and_clear();
        (self.artifacts, elapsed)
    }
}

/// `754s` as `12m34s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_machine_lines() {
        let m = parse_machine_line("1600000000,,ui,say,\\n==> Wait completed%!(PACKER_COMMA) ok")
            .unwrap();
        assert_eq!(m.kind, "ui");
        assert_eq!(m.data, ["say", "\n==> Wait completed, ok"]);
        let a = parse_machine_line("1600000000,amazon-ebs,artifact,0,id,us-west-2:ami-1").unwrap();
        assert_eq!(a.target, "amazon-ebs");
        assert_eq!(a.data, ["0", "id", "us-west-2:ami-1"]);
        assert!(parse_machine_line("==> plain output").is_none());
    }

    #[test]
    fn collects_artifacts() {
        let mut p = Progress::start(false, Secrets::default());
        p.stdout_line("1,amazon-ebs,artifact,0,builder-id,mitchellh.amazonebs");
        p.stdout_line("1,amazon-ebs,artifact,0,id,us-west-2:ami-1%!(PACKER_COMMA)us-east-1:ami-2");
        let (artifacts, _) = p.finish();
        assert_eq!(
            artifacts,
            [Artifact {
                builder: "amazon-ebs".into(),
                id: "us-west-2:ami-1,us-east-1:ami-2".into()
            }]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_secs(754)), "12m34s");
        assert_eq!(format_duration(Duration::from_millis(3200)), "3.2s");
    }
}
