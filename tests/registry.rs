//! Image pulls from a REAL registry: Debian's `docker-registry` (the CNCF distribution registry)
//! runs as a subprocess on 127.0.0.1 (which Docker treats as an insecure registry, so plain HTTP),
//! once anonymous and once behind htpasswd basic auth. Each test publishes its own image (a
//! `taskenv_pass` layer plus a unique marker file, so the pull really downloads a layer), removes
//! the local copy, and runs a task with it through the engine.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_with, Sandbox};
use docker_worker::config::RegistryCredentials;
use docker_worker::docker::{Docker, RegistryLogin};
use docker_worker::resolution::{Outcome, Resolution};
use futures_util::StreamExt;
use serde_json::json;

const USER: &str = "dw-user";
const PASSWORD: &str = "dw-s3cret-pw";

/// A tool a test needs: under CI a missing one is a failure naming its Debian package, and
/// outside CI too (never a silent skip).
fn tool(binary: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "this test needs `{binary}` from Debian's `{package}` package \
             (apt-get install -y {package}){}",
            if std::env::var("CI").as_deref() == Ok("true") {
                "; CI must install it (see .ci/run)"
            } else {
                ""
            }
        ),
    }
}

/// A running registry; dropping it (even on panic) kills the process and removes its storage.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry on a free loopback port; with `auth`, it wants `USER`/`PASSWORD`.
    async fn start(auth: bool) -> Registry {
        let binary = tool("docker-registry", "docker-registry");
        let mut last_log = String::new();
        // The free port is found by binding :0 and releasing it; another process could take it
        // in between, so a registry that dies at start is retried on a new port.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            );
            if auth {
                let htpasswd = dir.path().join("htpasswd");
                write_htpasswd(&htpasswd);
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: dw-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut registry = Registry { child, port, dir };
            if registry.wait_ready().await {
                return registry;
            }
            last_log = registry.log();
        }
        panic!("the registry did not start; its last log:\n{last_log}");
    }

    /// Wait until `/v2/` answers (200, or 401 with auth); false if the process died.
    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(resp) = client.get(&url).send().await {
                let code = resp.status().as_u16();
                if code == 200 || code == 401 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the registry on port {} did not answer in 20s; its log:\n{}",
            self.port,
            self.log()
        );
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the registry logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// HTTP requests the registry has served (its access log lines).
    fn requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("127.0.0.1 - "))
            .count()
    }

    fn login(&self) -> RegistryLogin {
        RegistryLogin {
            server: self.host(),
            username: USER.into(),
            password: PASSWORD.into(),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An htpasswd file (bcrypt, which registry 2.8 requires) for `USER`/`PASSWORD`.
fn write_htpasswd(path: &Path) {
    let htpasswd = tool("htpasswd", "apache2-utils");
    let out = Command::new(htpasswd)
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .expect("running htpasswd");
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out.stdout))
        .expect("writing htpasswd");
}

/// Image names this test created; dropping removes them (even on panic).
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rmi", name]).output();
        }
    }
}

/// A unique marker for this test's image.
fn unique() -> String {
    docker_worker::local::random_task_id()
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "x")
}

/// Build `NAME` = `taskenv_pass` + `/marker` (holding `marker`), push it to its registry (with
/// `login`), and remove the local copy, so a task with `NAME` must pull it. The name goes into
/// `images` first, for cleanup.
async fn publish(
    docker: &Docker,
    name: &str,
    marker: &str,
    login: Option<RegistryLogin>,
    images: &mut Images,
) {
    images.0.push(name.to_string());
    let dockerfile = "FROM taskenv_pass\nCOPY marker /marker\n";
    let mut tar = tokio_tar::Builder::new(Vec::new());
    for (path, data) in [("Dockerfile", dockerfile), ("marker", marker)] {
        let mut header = tokio_tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, data.as_bytes())
            .await
            .unwrap();
    }
    let tar = tar.into_inner().await.unwrap();
    docker
        .build_image(name, tar)
        .await
        .unwrap_or_else(|e| panic!("building {name}: {e}"));

    let mut push = Box::pin(docker.push(name, login));
    let mut statuses = Vec::new();
    while let Some(item) = push.next().await {
        let info = item.unwrap_or_else(|e| panic!("pushing {name}: {e}"));
        statuses.extend(info.status);
    }
    assert!(
        statuses.iter().any(|s| s.contains("digest: sha256:")),
        "the push of {name} did not finish: {statuses:?}"
    );

    docker.remove_image(name).await.expect("removing the image");
    assert!(
        !docker.image_exists(name).await.unwrap(),
        "{name} is still local"
    );
}

fn payload(image: &str) -> serde_json::Value {
    json!({"image": image, "command": ["/bin/sh", "-c", "cat /marker; echo"], "maxRunTime": 60})
}

/// The pull's log: the download lines and layer progress (`<layer id>: <status>`), one layer
/// really downloaded.
fn assert_pulled(log: &str, name: &str) {
    assert!(
        log.contains(&format!("Downloading image \"{name}\" (attempt 1 of ")),
        "{log}"
    );
    assert!(
        log.contains(&format!("Downloaded image \"{name}\"")),
        "{log}"
    );
    let layer_line = |status: &str| {
        log.lines().any(|l| {
            l.split_once("] ")
                .and_then(|(_, rest)| rest.split_once(": "))
                .is_some_and(|(id, s)| {
                    id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()) && s == status
                })
        })
    };
    for status in ["Pulling fs layer", "Pull complete"] {
        assert!(layer_line(status), "no layer line {status:?} in:\n{log}");
    }
}

#[tokio::test]
async fn an_image_on_an_anonymous_registry_is_pulled_and_run() {
    let sb = Sandbox::new();
    let docker = common::docker().await;
    common::images(&docker).await;
    let registry = Registry::start(false).await;
    let mut images = Images(Vec::new());
    let marker = unique();
    let name = format!("{}/dw-test/pass:{marker}", registry.host());
    publish(&docker, &name, &marker, None, &mut images).await;

    let mut config = sb.config();
    config.docker_config.max_attempts = 1;
    let r = run_with(&sb, config, payload(&name), None, None).await;
    assert_eq!(r.report.resolution, Resolution::Completed, "{}", r.log);
    assert_pulled(&r.log, &name);
    // The container ran the pulled image.
    assert!(r.log.contains(&format!("\r\n{marker}\r\n")), "{}", r.log);
    assert!(
        docker.image_exists(&name).await.unwrap(),
        "{name} not local"
    );
    drop(images);
    assert!(!docker.image_exists(&name).await.unwrap());
}

#[tokio::test]
async fn a_private_registry_needs_the_login_and_the_image_scope() {
    let sb = Sandbox::new();
    let docker = common::docker().await;
    common::images(&docker).await;
    let registry = Registry::start(true).await;
    let mut images = Images(Vec::new());
    let marker = unique();
    let name = format!("{}/dw-test/pass:{marker}", registry.host());
    publish(&docker, &name, &marker, Some(registry.login()), &mut images).await;

    // The registry really wants the login.
    let anonymous = reqwest::get(format!(
        "http://{}/v2/dw-test/pass/manifests/{marker}",
        registry.host()
    ))
    .await
    .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    let creds = |password: &str| RegistryCredentials {
        username: USER.into(),
        password: password.into(),
    };
    let scope = format!("docker-worker:image:{name}");

    // A queue task without the docker-worker:image scope: refused before anything is pulled.
    let mut config = sb.config();
    config.registries.insert(registry.host(), creds(PASSWORD));
    let before = registry.requests();
    let r = run_with(&sb, config.clone(), payload(&name), None, Some(vec![])).await;
    assert_eq!(
        r.report.outcome,
        Outcome::MissingScopes(vec![scope.clone()]),
        "{}",
        r.log
    );
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(
        r.log.contains(&format!(
            "Task is missing scopes required by its payload: {scope}"
        )),
        "{}",
        r.log
    );
    assert!(!r.log.contains("Downloading image"), "{}", r.log);
    assert!(!docker.image_exists(&name).await.unwrap());
    assert_eq!(
        registry.requests(),
        before,
        "the registry was asked:\n{}",
        registry.log()
    );

    // No login: the pull fails with the registry's refusal.
    let mut no_login = sb.config();
    no_login.docker_config.max_attempts = 1;
    let r = run_with(&sb, no_login, payload(&name), None, None).await;
    let Outcome::ImageFailed(message) = &r.report.outcome else {
        panic!("{:?}\n{}", r.report.outcome, r.log)
    };
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(
        message.contains("no basic auth credentials") || message.contains("unauthorized"),
        "{message}"
    );
    assert!(r.log.contains(message.as_str()), "{}", r.log);
    assert!(!docker.image_exists(&name).await.unwrap());

    // A wrong password: refused the same way.
    let mut wrong = sb.config();
    wrong.docker_config.max_attempts = 1;
    wrong.registries.insert(registry.host(), creds("wrong"));
    let r = run_with(&sb, wrong, payload(&name), None, None).await;
    let Outcome::ImageFailed(message) = &r.report.outcome else {
        panic!("{:?}\n{}", r.report.outcome, r.log)
    };
    assert!(message.contains("unauthorized"), "{message}");
    assert!(!docker.image_exists(&name).await.unwrap());

    // The login, with the scope (the nearest path wins over a wrong host-wide login).
    let mut config = sb.config();
    config.docker_config.max_attempts = 1;
    config.registries.insert(registry.host(), creds("wrong"));
    config
        .registries
        .insert(format!("{}/dw-test", registry.host()), creds(PASSWORD));
    let r = run_with(&sb, config, payload(&name), None, Some(vec![scope.clone()])).await;
    assert_eq!(r.report.resolution, Resolution::Completed, "{}", r.log);
    assert_pulled(&r.log, &name);
    assert!(r.log.contains(&format!("\r\n{marker}\r\n")), "{}", r.log);
    assert!(
        docker.image_exists(&name).await.unwrap(),
        "{name} not local"
    );
    drop(images);
    assert!(!docker.image_exists(&name).await.unwrap());
}
