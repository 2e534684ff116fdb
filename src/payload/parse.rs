//! Hand-written walk over the payload JSON: every error is collected with its path, so a task author
//! sees all problems at once (serde derive would stop at the first).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};

use super::{
    ArtifactKind, ArtifactSpec, Capabilities, Devices, Features, Image, OnExitStatus, Payload,
    PayloadError, PayloadErrors, ValidationContext, DEFAULT_LOG_NAME, FEATURE_NAMES,
    MAX_RUN_TIME_LIMIT,
};

const IMAGE_TYPES: &str = r#""docker-image", "indexed-image" or "task-image""#;

pub(super) fn parse(value: &Value, ctx: &ValidationContext) -> Result<Payload, PayloadErrors> {
    let mut c = Checker::default();
    let Some(obj) = value.as_object() else {
        c.err(
            "payload",
            format!("expected an object, got {}", describe(value)),
        );
        return Err(PayloadErrors(c.errors));
    };

    let mut payload = Payload {
        image: Image::Name(String::new()),
        command: Vec::new(),
        env: BTreeMap::new(),
        max_run_time: ctx.default_max_run_time,
        artifacts: BTreeMap::new(),
        cache: BTreeMap::new(),
        capabilities: Capabilities::default(),
        on_exit_status: OnExitStatus::default(),
        features: Features::default(),
        log: DEFAULT_LOG_NAME.to_string(),
        superseder_url: None,
    };
    let mut image = None;
    let mut explicit_features = BTreeMap::new();

    for (key, v) in sorted(obj) {
        let path = key_path("payload", key);
        match key.as_str() {
            "image" => image = c.image(&path, v),
            "command" => payload.command = c.string_array(&path, v),
            "env" => payload.env = c.string_map(&path, v),
            "maxRunTime" => {
                if let Some(n) = c.max_run_time(&path, v) {
                    payload.max_run_time = n;
                }
            }
            "artifacts" => payload.artifacts = c.artifacts(&path, v, ctx),
            "cache" => payload.cache = c.string_map(&path, v),
            "capabilities" => payload.capabilities = c.capabilities(&path, v),
            "onExitStatus" => payload.on_exit_status = c.on_exit_status(&path, v),
            "features" => explicit_features = c.feature_flags(&path, v),
            "log" => {
                if let Some(s) = c.non_empty_string(&path, v) {
                    payload.log = s;
                }
            }
            "supersederUrl" => payload.superseder_url = c.string(&path, v),
            _ => c.err(&path, "unknown property"),
        }
    }
    if !obj.contains_key("image") {
        c.err("payload.image", "required");
    }
    payload.features = c.resolve_features(&explicit_features, ctx);
    // The worker uploads the log under these names itself; an artifact may not take them.
    for reserved in [payload.log.clone(), super::backing_log_name(&payload.log)] {
        if payload.artifacts.contains_key(&reserved) {
            c.err(
                &key_path("payload.artifacts", &reserved),
                format!("the name \"{reserved}\" is reserved for the task log"),
            );
        }
    }

    if !c.errors.is_empty() {
        return Err(PayloadErrors(c.errors));
    }
    // No error means the image was present and valid.
    payload.image = image.expect("image checked above");
    Ok(payload)
}

/// The path of `key` below `parent`: `parent.key`, or `parent["key"]` when the key is not a plain
/// identifier.
fn key_path(parent: &str, key: &str) -> String {
    let mut chars = key.chars();
    let plain = chars
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_' || ch == '$')
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", quote(key))
    }
}

/// Object entries in key order, whatever map type serde_json was built with, so errors come out in
/// a stable order.
fn sorted(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A short rendering of a JSON value for "got ..." in messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 60 => {
            let head: String = s.chars().take(57).collect();
            let quoted = quote(&head);
            format!("{}...\"", &quoted[..quoted.len() - 1])
        }
        Value::String(s) => quote(s),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A JSON integer; `30.0` counts (the schema's `multipleOf: 1`), `30.5` does not.
fn integer(n: &Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

fn canonical_feature(name: &str) -> Option<&'static str> {
    match name {
        "bufferLog" => Some("bulkLog"),
        "azureLivelog" => Some("localLiveLog"),
        _ => FEATURE_NAMES.iter().copied().find(|known| *known == name),
    }
}

fn feature_slot<'a>(f: &'a mut Features, name: &str) -> &'a mut bool {
    match name {
        "localLiveLog" => &mut f.local_live_log,
        "bulkLog" => &mut f.bulk_log,
        "taskclusterProxy" => &mut f.taskcluster_proxy,
        "artifacts" => &mut f.artifacts,
        "dind" => &mut f.dind,
        "dockerSave" => &mut f.docker_save,
        "interactive" => &mut f.interactive,
        "allowPtrace" => &mut f.allow_ptrace,
        "chainOfTrust" => &mut f.chain_of_trust,
        other => unreachable!("unknown feature {other}"),
    }
}

/// A feature flag as written: the key used (maybe an alias), its path and its value.
struct FeatureFlag {
    path: String,
    value: bool,
}

#[derive(Default)]
struct Checker {
    errors: Vec<PayloadError>,
}

impl Checker {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(PayloadError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn expected(&mut self, path: &str, what: &str, got: &Value) {
        self.err(path, format!("expected {what}, got {}", describe(got)));
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.expected(path, "a string", v);
                None
            }
        }
    }

    fn non_empty_string(&mut self, path: &str, v: &Value) -> Option<String> {
        let s = self.string(path, v)?;
        if s.is_empty() {
            self.err(path, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.expected(path, "a boolean", v);
                None
            }
        }
    }

    fn object<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.expected(path, "an object", v);
                None
            }
        }
    }

    fn unknown_keys(&mut self, path: &str, m: &Map<String, Value>, known: &[&str]) {
        for (key, _) in sorted(m) {
            if !known.contains(&key.as_str()) {
                self.err(&key_path(path, key), "unknown property");
            }
        }
    }

    fn string_array(&mut self, path: &str, v: &Value) -> Vec<String> {
        let Value::Array(items) = v else {
            self.expected(path, "an array of strings", v);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(&format!("{path}[{i}]"), item))
            .collect()
    }

    fn integer_array(&mut self, path: &str, v: &Value) -> Vec<i64> {
        let Value::Array(items) = v else {
            self.expected(path, "an array of integers", v);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_number().and_then(integer) {
                Some(n) => out.push(n),
                None => self.expected(&format!("{path}[{i}]"), "an integer", item),
            }
        }
        out
    }

    fn string_map(&mut self, path: &str, v: &Value) -> BTreeMap<String, String> {
        let Some(m) = self.object(path, v) else {
            return BTreeMap::new();
        };
        sorted(m)
            .into_iter()
            .filter_map(|(k, v)| Some((k.clone(), self.string(&key_path(path, k), v)?)))
            .collect()
    }

    fn max_run_time(&mut self, path: &str, v: &Value) -> Option<u64> {
        match v.as_number().and_then(integer) {
            Some(n) if (1..=MAX_RUN_TIME_LIMIT as i64).contains(&n) => Some(n as u64),
            _ => {
                self.expected(
                    path,
                    &format!("an integer from 1 to {MAX_RUN_TIME_LIMIT}"),
                    v,
                );
                None
            }
        }
    }

    fn image(&mut self, path: &str, v: &Value) -> Option<Image> {
        let m = match v {
            Value::String(_) => return self.non_empty_string(path, v).map(Image::Name),
            Value::Object(m) => m,
            _ => {
                self.expected(path, "an image name or an object with a type", v);
                return None;
            }
        };
        let type_path = key_path(path, "type");
        let Some(kind) = m.get("type") else {
            self.err(&type_path, format!("required ({IMAGE_TYPES})"));
            return None;
        };
        let kind = self.string(&type_path, kind)?;
        let fields: &[&str] = match kind.as_str() {
            "docker-image" => &["name"],
            "indexed-image" => &["namespace", "path"],
            "task-image" => &["taskId", "path"],
            _ => {
                self.err(
                    &type_path,
                    format!("expected {IMAGE_TYPES}, got {}", quote(&kind)),
                );
                return None;
            }
        };
        let known: Vec<&str> = std::iter::once("type")
            .chain(fields.iter().copied())
            .collect();
        self.unknown_keys(path, m, &known);
        let mut values = Vec::new();
        for field in fields {
            let field_path = key_path(path, field);
            match m.get(*field) {
                Some(v) => values.push(self.non_empty_string(&field_path, v)),
                None => {
                    self.err(&field_path, "required");
                    values.push(None);
                }
            }
        }
        let values: Option<Vec<String>> = values.into_iter().collect();
        let mut values = values?.into_iter();
        let mut next = || values.next().unwrap_or_default();
        Some(match kind.as_str() {
            "docker-image" => Image::DockerImage { name: next() },
            "indexed-image" => Image::IndexedImage {
                namespace: next(),
                path: next(),
            },
            _ => Image::TaskImage {
                task_id: next(),
                path: next(),
            },
        })
    }

    fn artifacts(
        &mut self,
        path: &str,
        v: &Value,
        ctx: &ValidationContext,
    ) -> BTreeMap<String, ArtifactSpec> {
        let Some(m) = self.object(path, v) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (name, a) in sorted(m) {
            let apath = key_path(path, name);
            if name.is_empty() {
                self.err(&apath, "artifact name must not be empty");
                continue;
            }
            if let Some(spec) = self.artifact(&apath, a, ctx) {
                out.insert(name.clone(), spec);
            }
        }
        out
    }

    fn artifact(&mut self, path: &str, v: &Value, ctx: &ValidationContext) -> Option<ArtifactSpec> {
        let m = match v {
            // 2014 form: `"name": "/path/in/container"` is a file artifact.
            Value::String(_) => {
                let p = self.artifact_path(path, v)?;
                return Some(ArtifactSpec {
                    kind: ArtifactKind::File,
                    path: p,
                    expires: None,
                });
            }
            Value::Object(m) => m,
            _ => {
                self.expected(path, "an object with type and path", v);
                return None;
            }
        };
        self.unknown_keys(path, m, &["type", "path", "expires"]);
        let type_path = key_path(path, "type");
        let kind = match m.get("type") {
            None => {
                self.err(&type_path, "required");
                None
            }
            Some(t) => match t.as_str() {
                Some("file") => Some(ArtifactKind::File),
                Some("directory") => Some(ArtifactKind::Directory),
                _ => {
                    self.expected(&type_path, r#""file" or "directory""#, t);
                    None
                }
            },
        };
        let path_path = key_path(path, "path");
        let artifact_path = match m.get("path") {
            None => {
                self.err(&path_path, "required");
                None
            }
            Some(p) => self.artifact_path(&path_path, p),
        };
        let expires = match m.get("expires") {
            None => Some(None),
            Some(e) => self.expires(&key_path(path, "expires"), e, ctx).map(Some),
        };
        Some(ArtifactSpec {
            kind: kind?,
            path: artifact_path?,
            expires: expires?,
        })
    }

    /// A path inside the container. Docker resolves container paths from `/`, and the original
    /// worker accepted relative ones, so `build/x` is kept as `/build/x`.
    fn artifact_path(&mut self, path: &str, v: &Value) -> Option<String> {
        let p = self.non_empty_string(path, v)?;
        Some(if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        })
    }

    fn expires(&mut self, path: &str, v: &Value, ctx: &ValidationContext) -> Option<DateTime<Utc>> {
        let s = self.string(path, v)?;
        let Ok(t) = DateTime::parse_from_rfc3339(&s) else {
            self.err(
                path,
                format!("expected an RFC 3339 date-time, got {}", describe(v)),
            );
            return None;
        };
        let t = t.with_timezone(&Utc);
        if ctx
            .task_expires
            .is_some_and(|task_expires| t > task_expires)
        {
            self.err(path, "must not be greater than task expiration");
            return None;
        }
        Some(t)
    }

    fn capabilities(&mut self, path: &str, v: &Value) -> Capabilities {
        let mut caps = Capabilities::default();
        let Some(m) = self.object(path, v) else {
            return caps;
        };
        for (key, v) in sorted(m) {
            let kpath = key_path(path, key);
            match key.as_str() {
                "privileged" => caps.privileged = self.boolean(&kpath, v).unwrap_or_default(),
                "disableSeccomp" => {
                    caps.disable_seccomp = self.boolean(&kpath, v).unwrap_or_default()
                }
                "devices" => caps.devices = self.devices(&kpath, v),
                _ => self.err(&kpath, "unknown property"),
            }
        }
        caps
    }

    fn devices(&mut self, path: &str, v: &Value) -> Devices {
        let mut devices = Devices::default();
        let Some(m) = self.object(path, v) else {
            return devices;
        };
        for (key, v) in sorted(m) {
            let kpath = key_path(path, key);
            let slot = match key.as_str() {
                "loopbackVideo" => &mut devices.loopback_video,
                "loopbackAudio" => &mut devices.loopback_audio,
                "hostSharedMemory" => &mut devices.host_shared_memory,
                "kvm" => &mut devices.kvm,
                _ => {
                    self.err(&kpath, "unknown property");
                    continue;
                }
            };
            *slot = self.boolean(&kpath, v).unwrap_or_default();
        }
        devices
    }

    fn on_exit_status(&mut self, path: &str, v: &Value) -> OnExitStatus {
        let mut out = OnExitStatus::default();
        let Some(m) = self.object(path, v) else {
            return out;
        };
        for (key, v) in sorted(m) {
            let kpath = key_path(path, key);
            match key.as_str() {
                "retry" => out.retry = self.integer_array(&kpath, v),
                "purgeCaches" => out.purge_caches = self.integer_array(&kpath, v),
                _ => self.err(&kpath, "unknown property"),
            }
        }
        out
    }

    /// The flags as written, by canonical feature name (aliases folded in).
    fn feature_flags(&mut self, path: &str, v: &Value) -> BTreeMap<&'static str, FeatureFlag> {
        let mut out: BTreeMap<&'static str, FeatureFlag> = BTreeMap::new();
        let Some(m) = self.object(path, v) else {
            return out;
        };
        for (key, v) in sorted(m) {
            let kpath = key_path(path, key);
            let Some(name) = canonical_feature(key) else {
                self.err(&kpath, "unknown feature");
                continue;
            };
            let Some(value) = self.boolean(&kpath, v) else {
                continue;
            };
            match out.get(name) {
                Some(prev) if prev.value != value => {
                    let message = format!("conflicts with {} (same feature)", prev.path);
                    self.err(&kpath, message);
                }
                Some(_) => {}
                None => {
                    out.insert(name, FeatureFlag { path: kpath, value });
                }
            }
        }
        out
    }

    /// Schema defaults, then the payload's flags. A feature the worker disables is off; asking for
    /// it explicitly is an error.
    fn resolve_features(
        &mut self,
        explicit: &BTreeMap<&'static str, FeatureFlag>,
        ctx: &ValidationContext,
    ) -> Features {
        let mut features = Features::default();
        for name in FEATURE_NAMES {
            let disabled = ctx.disabled_features.iter().any(|d| d == name);
            let slot = feature_slot(&mut features, name);
            match explicit.get(name) {
                Some(flag) if flag.value && disabled => {
                    self.err(
                        &flag.path,
                        format!("feature \"{name}\" is disabled on this worker"),
                    );
                    *slot = false;
                }
                Some(flag) => *slot = flag.value,
                None if disabled => *slot = false,
                None => {}
            }
        }
        features
    }
}
