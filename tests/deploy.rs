//! `dw-deploy packer` end to end, with a fake `packer` on PATH that records its argv, its
//! environment, the process list and a copy of the staged files (with their modes). One test runs
//! the real `packer validate` on `packer/worker.json` through dw-deploy. Every file a test makes
//! lives in a `TempDir`, removed even when the test fails.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use tempfile::TempDir;

const ROOT_URL: &str = "https://tc.example.com";
const CLIENT_ID: &str = "project/ci/worker-client-7f3a";
const ACCESS_TOKEN: &str = "tOkEn-9d8c7b6a5e4f3a2b1c0d9e8f7a6b5c4d";

/// The fake packer: records everything, then behaves as FAKE_PACKER_* variables say.
const FAKE_PACKER: &str = r#"#!/bin/sh
rec="$FAKE_PACKER_RECORD"
for a in "$@"; do printf '%s\n' "$a"; done > "$rec/argv"
env > "$rec/env"
for f in /proc/[0-9]*/cmdline; do { tr '\0' ' ' < "$f"; } 2>/dev/null; echo; done > "$rec/ps"
staging=""
for a in "$@"; do case "$a" in staging_dir=*) staging="${a#staging_dir=}";; esac; done
printf '%s' "$staging" > "$rec/staging_dir"
stat -c '%a' "$staging" > "$rec/staging_mode"
mkdir "$rec/staged"
for f in "$staging"/*; do
  cp "$f" "$rec/staged/"
  stat -c '%a %n' "$f" | sed "s|$staging/||" >> "$rec/listing"
done
[ -n "$FAKE_PACKER_OUTPUT" ] && cat "$FAKE_PACKER_OUTPUT"
[ -n "$FAKE_PACKER_STDERR" ] && cat "$FAKE_PACKER_STDERR" >&2
if [ -n "$FAKE_PACKER_SLEEP" ]; then
  # Like packer under panicwrap: this parent shrugs SIGINT off, the child it runs (in the
  # foreground: sh ignores SIGINT in background jobs) must receive it and clean up.
  trap ':' INT TERM
  rec="$rec" sh -c '
    trap "echo received > \"\$rec/signal\"; kill \$pid 2>/dev/null; exit 1" INT TERM
    sleep "$FAKE_PACKER_SLEEP" >/dev/null 2>&1 &
    pid=$!
    touch "$rec/ready"
    wait $pid
  '
  exit $?
fi
exit "${FAKE_PACKER_EXIT:-0}"
"#;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn good_options() -> String {
    format!(
        "# test options\n\
         export TASKCLUSTER_ROOT_URL=\"{ROOT_URL}\"\n\
         export TASKCLUSTER_CLIENT_ID=\"{CLIENT_ID}\"\n\
         TASKCLUSTER_ACCESS_TOKEN='{ACCESS_TOKEN}'\n\
         DOCKER_WORKER_OPTS=\"--provisioner-id prov --worker-type wt\"\n"
    )
}

/// One test's world: a fake packer on PATH, a private TMPDIR, a record dir, an options file.
struct World {
    root: TempDir,
}

impl World {
    fn new(options: &str) -> World {
        let root = tempfile::Builder::new()
            .prefix("dw-deploy-test-")
            .tempdir()
            .unwrap();
        for d in ["bin", "tmp", "record", "empty-path"] {
            fs::create_dir(root.path().join(d)).unwrap();
        }
        let packer = root.path().join("bin/packer");
        fs::write(&packer, FAKE_PACKER).unwrap();
        fs::set_permissions(&packer, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            root.path().join("binary"),
            b"#!/bin/sh\necho fake docker-worker\n",
        )
        .unwrap();
        let w = World { root };
        w.write_options(options);
        w
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn write_options(&self, text: &str) {
        let p = self.path("opts.sh");
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn opts_var(&self) -> String {
        format!("docker_worker_opts={}", self.path("opts.sh").display())
    }

    /// `dw-deploy packer -var docker_worker_opts=... --binary FAKE` plus `extra`.
    fn cmd(&self, extra: &[&str]) -> assert_cmd::Command {
        let mut c = cargo_bin_cmd!("dw-deploy");
        c.current_dir(repo())
            .env("PATH", self.path_var())
            .env("TMPDIR", self.path("tmp"))
            .env("FAKE_PACKER_RECORD", self.path("record"))
            .env_remove("TASKCLUSTER_ACCESS_TOKEN")
            .env_remove("TASKCLUSTER_CLIENT_ID")
            .timeout(Duration::from_secs(60))
            .arg("packer")
            .arg("-var")
            .arg(self.opts_var())
            .arg("--binary")
            .arg(self.path("binary"))
            .args(extra);
        c
    }

    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn record(&self, name: &str) -> String {
        fs::read_to_string(self.path("record").join(name))
            .unwrap_or_else(|e| panic!("fake packer did not record {name}: {e}"))
    }

    fn packer_ran(&self) -> bool {
        self.path("record/argv").exists()
    }

    /// dw-deploy must leave nothing in its TMPDIR, whatever happened.
    fn assert_tmp_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.path("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn packer_flags_pass_through_unchanged_and_in_order() {
    let w = World::new(&good_options());
    w.cmd(&[
        "-var",
        "aws_region=eu-central-1",
        "--verbose",
        "-var=instance_type=c5.xlarge",
        "-only=amazon-ebs",
        "-on-error=abort",
        "--",
        "--dry-run",
    ])
    .assert()
    .success();
    let staging = w.record("staging_dir");
    assert!(staging.starts_with(&w.path("tmp").display().to_string()));
    let argv: Vec<String> = w.record("argv").lines().map(String::from).collect();
    let expected = [
        "build".to_string(),
        "-machine-readable".into(),
        "-var".into(),
        format!("staging_dir={staging}"),
        "-var".into(),
        w.opts_var(),
        "-var".into(),
        "aws_region=eu-central-1".into(),
        "-var=instance_type=c5.xlarge".into(),
        "-only=amazon-ebs".into(),
        "-on-error=abort".into(),
        "--dry-run".into(),
        "packer/worker.json".into(),
    ];
    assert_eq!(argv, expected);
    w.assert_tmp_empty();
}

#[test]
fn stages_the_image_files_with_their_modes() {
    let w = World::new(&good_options());
    w.cmd(&[]).assert().success();
    assert_eq!(w.record("staging_mode").trim(), "700");
    let mut listing: Vec<String> = w.record("listing").lines().map(String::from).collect();
    listing.sort();
    assert_eq!(
        listing,
        [
            "600 docker-worker-opts.sh",
            "644 default-worker",
            "644 docker-worker.service",
            "755 docker-worker",
        ]
    );
    let staged = w.path("record/staged");
    assert_eq!(
        fs::read(staged.join("docker-worker")).unwrap(),
        fs::read(w.path("binary")).unwrap()
    );
    assert_eq!(
        fs::read(staged.join("default-worker")).unwrap(),
        fs::read(repo().join("packer/app/etc/default-worker")).unwrap()
    );
    let opts = fs::read_to_string(staged.join("docker-worker-opts.sh")).unwrap();
    for line in [
        format!("TASKCLUSTER_ROOT_URL=\"{ROOT_URL}\""),
        format!("TASKCLUSTER_CLIENT_ID=\"{CLIENT_ID}\""),
        format!("TASKCLUSTER_ACCESS_TOKEN=\"{ACCESS_TOKEN}\""),
        "DOCKER_WORKER_OPTS=\"--provisioner-id prov --worker-type wt\"".to_string(),
    ] {
        assert!(
            opts.lines().any(|l| l == line),
            "{line} not in staged options:\n{opts}"
        );
    }
    let unit = fs::read_to_string(staged.join("docker-worker.service")).unwrap();
    for line in [
        "EnvironmentFile=/etc/default/docker-worker",
        "EnvironmentFile=/etc/docker-worker/docker-worker-opts.sh",
        "ExecStart=/usr/local/bin/docker-worker start $DOCKER_WORKER_OPTS",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=300",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} not in unit:\n{unit}"
        );
    }
    w.assert_tmp_empty();
}

#[test]
fn every_options_file_error_names_its_line() {
    let creds = format!(
        "TASKCLUSTER_ROOT_URL={ROOT_URL}\nTASKCLUSTER_CLIENT_ID={CLIENT_ID}\nTASKCLUSTER_ACCESS_TOKEN={ACCESS_TOKEN}\n"
    );
    // (extra lines after the 3 credential lines and a comment, the error's line, what it says)
    let cases: &[(&str, usize, &str)] = &[
        ("FOO=bar", 5, "unknown key `FOO`"),
        ("echo hello", 5, "expected `=` after `echo`"),
        ("=x", 5, "expected `KEY=value`"),
        ("RUST_LOG = info", 5, "no spaces allowed around `=`"),
        ("RUST_LOG=\"$HOME\"", 5, "`$` expansion is not supported"),
        (
            "RUST_LOG=\"`id`\"",
            5,
            "command substitution is not supported",
        ),
        ("RUST_LOG=$(id)", 5, "unquoted value contains `$`"),
        ("RUST_LOG=~/x", 5, "`~` is not expanded"),
        ("RUST_LOG=\"info", 5, "unterminated double quote"),
        ("RUST_LOG='info", 5, "unterminated single quote"),
        ("RUST_LOG=info debug", 5, "unexpected text after the value"),
        ("RUST_LOG=\"a\"b", 5, "unexpected text after the value"),
        (
            "\nRUST_LOG=a\nRUST_LOG=b",
            7,
            "`RUST_LOG` is set twice (first on line 6)",
        ),
        (
            "DOCKER_WORKER_OPTS=\"--worker-type 'a b'\"",
            5,
            "systemd splits $DOCKER_WORKER_OPTS",
        ),
        (
            "TASKCLUSTER_CERTIFICATE=\"<certificate-json>\"",
            5,
            "still holds a placeholder",
        ),
    ];
    for (extra, line, message) in cases {
        let w = World::new(&format!("{creds}# comment\n{extra}\n"));
        let opts = w.path("opts.sh").display().to_string();
        w.cmd(&[])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!("{opts}:{line}: ")))
            .stderr(predicate::str::contains(*message))
            .stderr(predicate::str::contains(ACCESS_TOKEN).not());
        assert!(!w.packer_ran(), "packer ran despite: {extra}");
        w.assert_tmp_empty();
    }

    let required: &[(&str, usize, &str)] = &[
        (
            "TASKCLUSTER_ROOT_URL=",
            1,
            "`TASKCLUSTER_ROOT_URL` is empty",
        ),
        (
            "TASKCLUSTER_ROOT_URL=ftp://x",
            1,
            "`TASKCLUSTER_ROOT_URL` must be an http:// or https:// URL",
        ),
        (
            "TASKCLUSTER_CLIENT_ID=\"a b\"",
            2,
            "`TASKCLUSTER_CLIENT_ID` must not contain spaces",
        ),
    ];
    for (replacement, line, message) in required {
        let key = replacement.split('=').next().unwrap();
        let body: String = creds
            .lines()
            .map(|l| {
                if l.starts_with(key) {
                    replacement.to_string()
                } else {
                    l.to_string()
                }
            })
            .map(|l| l + "\n")
            .collect();
        let w = World::new(&body);
        let opts = w.path("opts.sh").display().to_string();
        w.cmd(&[])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "{opts}:{line}: {message}"
            )));
        assert!(!w.packer_ran());
    }

    // Missing credentials: a whole-file error per missing key.
    let w = World::new(&format!("TASKCLUSTER_ROOT_URL={ROOT_URL}\n"));
    let opts = w.path("opts.sh").display().to_string();
    w.cmd(&[])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{opts}: `TASKCLUSTER_CLIENT_ID` is required"
        )))
        .stderr(predicate::str::contains(format!(
            "{opts}: `TASKCLUSTER_ACCESS_TOKEN` is required"
        )));
    assert!(!w.packer_ran());
    w.assert_tmp_empty();
}

#[test]
fn unfilled_example_file_reports_each_placeholder() {
    let example = fs::read_to_string(repo().join("docker_worker_opts_example.sh")).unwrap();
    let w = World::new(&example);
    let opts = w.path("opts.sh").display().to_string();
    let mut assert = w.cmd(&[]).assert().code(1);
    for key in [
        "TASKCLUSTER_ROOT_URL",
        "TASKCLUSTER_CLIENT_ID",
        "TASKCLUSTER_ACCESS_TOKEN",
        "DOCKER_WORKER_OPTS",
    ] {
        let line = example
            .lines()
            .position(|l| l.starts_with(&format!("export {key}=")))
            .unwrap_or_else(|| panic!("{key} not in the example"))
            + 1;
        assert = assert.stderr(predicate::str::contains(format!(
            "{opts}:{line}: `{key}` still holds a placeholder"
        )));
    }
    assert!(!w.packer_ran());
    w.assert_tmp_empty();
}

#[test]
fn example_file_documents_every_key_and_passes_once_filled_in() {
    let example = fs::read_to_string(repo().join("docker_worker_opts_example.sh")).unwrap();
    for key in docker_worker::deploy::options::KEYS {
        assert!(example.contains(key.name), "{} undocumented", key.name);
    }
    let filled = example
        .replace("<https://taskcluster.example.com>", ROOT_URL)
        .replace("<client-id>", CLIENT_ID)
        .replace("<access-token>", ACCESS_TOKEN)
        .replace("<my-provisioner>", "prov")
        .replace("<my-worker-type>", "wt");
    let w = World::new(&filled);
    w.cmd(&["--dry-run"]).assert().success();
    w.assert_tmp_empty();
}

#[test]
fn default_worker_is_valid() {
    use docker_worker::deploy::options::{EnvFile, FileKind};
    let f = EnvFile::load(
        &repo().join("packer/app/etc/default-worker"),
        FileKind::Defaults,
    )
    .unwrap();
    assert_eq!(f.get("DOCKER_WORKER_OPTS"), Some("--host aws"));
}

#[test]
fn secrets_never_reach_output_argv_environment_or_process_list() {
    let w = World::new(&good_options());
    let out = w.path("packer-stdout");
    fs::write(
        &out,
        format!(
            "1700000000,,ui,say,==> amazon-ebs: Provisioning with shell script\n\
             1700000000,,ui,message,    amazon-ebs: token is {ACCESS_TOKEN}%!(PACKER_COMMA) client {CLIENT_ID}\n\
             plain line {ACCESS_TOKEN}\n"
        ),
    )
    .unwrap();
    let err = w.path("packer-stderr");
    fs::write(&err, format!("stderr has {ACCESS_TOKEN}\n")).unwrap();
    for verbose in [false, true] {
        let _ = fs::remove_dir_all(w.path("record"));
        fs::create_dir(w.path("record")).unwrap();
        let mut c = w.cmd(if verbose { &["--verbose"] } else { &[] });
        c.env("FAKE_PACKER_OUTPUT", &out)
            .env("FAKE_PACKER_STDERR", &err);
        let o = c.assert().success().get_output().clone();
        let all = text(&o.stdout) + &text(&o.stderr);
        assert!(
            !all.contains(ACCESS_TOKEN),
            "token shown (verbose={verbose}):\n{all}"
        );
        assert!(
            !all.contains(CLIENT_ID),
            "client id shown (verbose={verbose}):\n{all}"
        );
        let relayed = if verbose {
            "token is [redacted]%!(PACKER_COMMA) client [redacted]"
        } else {
            "token is [redacted], client [redacted]"
        };
        assert!(all.contains(relayed), "{all}");
        assert!(all.contains("stderr has [redacted]"), "{all}");
        for record in ["argv", "env", "ps"] {
            let r = w.record(record);
            assert!(!r.contains(ACCESS_TOKEN), "token in packer's {record}");
            assert!(!r.contains(CLIENT_ID), "client id in packer's {record}");
        }
        assert!(
            w.record("ps").contains("dw-deploy packer"),
            "process list not recorded"
        );
    }
    // --dry-run shows the command and the file list, not the credentials.
    let o = w
        .cmd(&["--dry-run"])
        .assert()
        .success()
        .get_output()
        .clone();
    let all = text(&o.stdout) + &text(&o.stderr);
    assert!(!all.contains(ACCESS_TOKEN) && !all.contains(CLIENT_ID));
    w.assert_tmp_empty();
}

#[test]
fn packer_exit_status_is_dw_deploys_and_staging_is_removed() {
    let w = World::new(&good_options());
    w.cmd(&[])
        .env("FAKE_PACKER_EXIT", "3")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("packer failed with exit status 3"));
    assert!(!Path::new(&w.record("staging_dir")).exists());
    w.assert_tmp_empty();
}

#[test]
fn success_shows_progress_messages_and_artifact_ids() {
    let w = World::new(&good_options());
    let out = w.path("packer-stdout");
    fs::write(
        &out,
        "1700000000,,ui,say,==> amazon-ebs: Creating temporary keypair...\n\
         1700000001,,ui,message,    amazon-ebs: Setting up docker.io\n\
         1700000002,amazon-ebs,artifact-count,1\n\
         1700000002,amazon-ebs,artifact,0,builder-id,mitchellh.amazonebs\n\
         1700000002,amazon-ebs,artifact,0,id,us-west-2:ami-0123456789abcdef0\n\
         1700000002,amazon-ebs,artifact,0,end\n",
    )
    .unwrap();
    w.cmd(&[])
        .env("FAKE_PACKER_OUTPUT", &out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "==> amazon-ebs: Creating temporary keypair...",
        ))
        .stdout(predicate::str::contains(
            "    amazon-ebs: Setting up docker.io",
        ))
        .stdout(predicate::str::contains(
            "artifact: amazon-ebs: us-west-2:ami-0123456789abcdef0",
        ))
        .stdout(predicate::str::contains("1700000000,").not());
    w.assert_tmp_empty();
}

#[test]
fn verbose_prints_packers_raw_output() {
    let w = World::new(&good_options());
    let out = w.path("packer-stdout");
    fs::write(
        &out,
        "1700000000,,ui,say,==> amazon-ebs: Stopping the source instance...\n",
    )
    .unwrap();
    w.cmd(&["--verbose"])
        .env("FAKE_PACKER_OUTPUT", &out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1700000000,,ui,say,==> amazon-ebs: Stopping the source instance...",
        ));
}

#[test]
fn dry_run_prints_the_command_and_staged_files_without_running_packer() {
    let w = World::new(&good_options());
    let o = w
        .cmd(&["-var", "aws_region=eu-west-1", "--dry-run"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = text(&o.stdout);
    assert!(!w.packer_ran());
    let command = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("packer build"))
        .unwrap_or_else(|| panic!("no packer command in:\n{stdout}"))
        .trim();
    let words = shell_words::split(command).unwrap();
    assert_eq!(words[..4], ["packer", "build", "-machine-readable", "-var"]);
    assert!(words[4].starts_with("staging_dir="));
    assert_eq!(
        words[5..],
        [
            "-var".to_string(),
            w.opts_var(),
            "-var".into(),
            "aws_region=eu-west-1".into(),
            "packer/worker.json".into()
        ]
    );
    for (mode, name) in [
        ("-rwxr-xr-x", "docker-worker"),
        ("-rw-r--r--", "default-worker"),
        ("-rw-------", "docker-worker-opts.sh"),
        ("-rw-r--r--", "docker-worker.service"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(mode) && l.ends_with(&format!("  {name}"))),
            "{mode} {name} not listed:\n{stdout}"
        );
    }
    w.assert_tmp_empty();
}

#[test]
fn missing_packer_names_the_package_to_install() {
    let w = World::new(&good_options());
    w.cmd(&[])
        .env("PATH", w.path("empty-path"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("packer is not installed"))
        .stderr(predicate::str::contains("package `packer`"));
    w.assert_tmp_empty();
}

#[test]
fn missing_options_variable_is_explained() {
    let w = World::new(&good_options());
    let mut c = cargo_bin_cmd!("dw-deploy");
    c.current_dir(repo())
        .env("PATH", w.path_var())
        .env("TMPDIR", w.path("tmp"))
        .args(["packer", "-var", "aws_region=x", "--binary"])
        .arg(w.path("binary"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "missing `-var \"docker_worker_opts=PATH\"`",
        ));
    w.assert_tmp_empty();
}

#[test]
fn help_explains_the_options() {
    cargo_bin_cmd!("dw-deploy")
        .args(["packer", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--dry-run"))
        .stdout(predicate::str::contains("--verbose"))
        .stdout(predicate::str::contains("--binary <PATH>"))
        .stdout(predicate::str::contains("docker_worker_opts=PATH"));
    cargo_bin_cmd!("dw-deploy")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("packer"));
}

#[test]
fn interrupt_lets_packer_clean_up_then_removes_staging() {
    let w = World::new(&good_options());
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_dw-deploy"))
        .current_dir(repo())
        .env("PATH", w.path_var())
        .env("TMPDIR", w.path("tmp"))
        .env("FAKE_PACKER_RECORD", w.path("record"))
        .env("FAKE_PACKER_SLEEP", "60")
        .arg("packer")
        .arg("-var")
        .arg(w.opts_var())
        .arg("--binary")
        .arg(w.path("binary"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.path("record/ready").exists() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fake packer never started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let staging = PathBuf::from(w.record("staging_dir"));
    assert!(staging.exists());
    let kill = StdCommand::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dw-deploy did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        w.record("signal").trim(),
        "received",
        "packer was not told to stop"
    );
    assert!(!staging.exists(), "staging dir left after Ctrl-C");
    w.assert_tmp_empty();
}

/// The real packer (Debian package `packer`, 1.6) validates the template with exactly the
/// variables dw-deploy passes: dw-deploy runs a wrapper that turns `build` into `validate`.
#[test]
fn real_packer_validates_the_template_with_dw_deploys_variables() {
    let real = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("packer"))
                .find(|p| p.is_file())
        })
        .expect("packer is not installed: install the Debian package `packer` (apt-get install -y packer); .ci/run does");
    let w = World::new(&good_options());
    let wrapper = w.path("bin/packer");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = build ] && shift\nexec '{}' validate \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    w.cmd(&[
        "-var",
        "aws_region=eu-central-1",
        "-var",
        "instance_type=c5.xlarge",
    ])
    .assert()
    .success();
    // And it does check: without the staging directory the template is rejected.
    StdCommand::new(&real)
        .current_dir(repo())
        .args(["validate", "packer/worker.json"])
        .output()
        .map(|o| assert!(!o.status.success(), "staging_dir should be required"))
        .unwrap();
    w.assert_tmp_empty();
}

/// Without `--binary`, dw-deploy runs `cargo build --release --bin docker-worker` (here a fake
/// cargo named by `$CARGO`, as `cargo run` sets it) and stages the executable cargo reports.
#[test]
fn without_binary_flag_stages_the_release_build() {
    let w = World::new(&good_options());
    let built = w.path("release-docker-worker");
    fs::write(&built, b"release build\n").unwrap();
    let cargo = w.path("bin/fake-cargo");
    fs::write(
        &cargo,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" > '{args}'\n\
             echo '{{\"reason\":\"compiler-artifact\",\"target\":{{\"name\":\"docker-worker\"}},\"executable\":\"{exe}\"}}'\n\
             echo '{{\"reason\":\"build-finished\",\"success\":true}}'\n",
            args = w.path("record/cargo-args").display(),
            exe = built.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = cargo_bin_cmd!("dw-deploy");
    c.current_dir(repo())
        .env("PATH", w.path_var())
        .env("TMPDIR", w.path("tmp"))
        .env("FAKE_PACKER_RECORD", w.path("record"))
        .env("CARGO", &cargo)
        .args(["packer", "-var", &w.opts_var()])
        .assert()
        .success();
    assert_eq!(
        w.record("cargo-args").trim(),
        "build --release --bin docker-worker --message-format=json-render-diagnostics"
    );
    assert_eq!(
        fs::read(w.path("record/staged/docker-worker")).unwrap(),
        b"release build\n"
    );
    w.assert_tmp_empty();

    // A failing build stops dw-deploy before packer, and cleans up.
    fs::write(
        &cargo,
        "#!/bin/sh\necho 'error[E0001]: broken' >&2\nexit 101\n",
    )
    .unwrap();
    let _ = fs::remove_dir_all(w.path("record"));
    fs::create_dir(w.path("record")).unwrap();
    let mut c = cargo_bin_cmd!("dw-deploy");
    c.current_dir(repo())
        .env("PATH", w.path_var())
        .env("TMPDIR", w.path("tmp"))
        .env("FAKE_PACKER_RECORD", w.path("record"))
        .env("CARGO", &cargo)
        .args(["packer", "-var", &w.opts_var()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cargo build --release --bin docker-worker` failed",
        ));
    assert!(!w.packer_ran());
    w.assert_tmp_empty();
}
