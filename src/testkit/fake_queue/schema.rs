//! Request-body rules copied from the Taskcluster schemas (queue and object services).
//! Each check returns the message of a 400 `InputValidationError`, naming the offending field.

use serde_json::Value;

/// The slugid pattern of taskId / uploadId (`^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$`).
pub fn is_slugid(s: &str) -> bool {
    let b = s.as_bytes();
    let url = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    b.len() == 22
        && b[..8].iter().all(|&c| url(c))
        && (b'Q'..=b'T').contains(&b[8])
        && url(b[9])
        && b"CGKOSWaeimquy26-".contains(&b[10])
        && b[11..21].iter().all(|&c| url(c))
        && b"AQgw".contains(&b[21])
}

/// `^([a-zA-Z0-9-_]*)$` with a length range.
pub fn is_identifier(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The kinds of values the rules need.
#[derive(Clone, Copy)]
pub enum Ty {
    /// Any string, with an optional maximum length.
    Str(Option<usize>),
    /// `^([a-zA-Z0-9-_]*)$`, length 1..=max.
    Ident(usize),
    /// A slugid.
    Slug,
    /// An RFC 3339 date-time.
    DateTime,
    /// An integer within a range.
    Int(i64, i64),
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// An absolute URI.
    Uri,
    /// `^([a-zA-Z0-9._/-]*)$`, length 1..=500 (projectId).
    Project,
    /// Any JSON object (checked elsewhere if needed).
    Object,
    /// An array of strings.
    StrArray,
}

/// One property of an object schema.
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

/// Shorthand for a required field.
pub const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

/// Shorthand for an optional field.
pub const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

fn check_value(path: &str, ty: Ty, v: &Value) -> Result<(), String> {
    let bad = |what: &str| Err(format!("{path} {what}"));
    match ty {
        Ty::Str(max) => match v.as_str() {
            Some(s) if max.is_none_or(|m| s.chars().count() <= m) => Ok(()),
            Some(_) => bad(&format!(
                "must NOT have more than {} characters",
                max.unwrap()
            )),
            None => bad("must be string"),
        },
        Ty::Ident(max) => match v.as_str() {
            Some(s) if is_identifier(s, 1, max) => Ok(()),
            Some(_) => bad(&format!(
                "must match pattern \"^([a-zA-Z0-9-_]*)$\" with length 1..{max}"
            )),
            None => bad("must be string"),
        },
        Ty::Slug => match v.as_str() {
            Some(s) if is_slugid(s) => Ok(()),
            Some(_) => bad("must match the slugid pattern"),
            None => bad("must be string"),
        },
        Ty::DateTime => match v.as_str() {
            Some(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
            Some(_) => bad("must match format \"date-time\""),
            None => bad("must be string"),
        },
        Ty::Int(min, max) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            Some(_) => bad(&format!("must be >= {min} and <= {max}")),
            None => bad("must be integer"),
        },
        Ty::Enum(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(()),
            _ => bad(&format!(
                "must be equal to one of the allowed values {allowed:?}"
            )),
        },
        Ty::Uri => match v.as_str() {
            Some(s) if url::Url::parse(s).is_ok() => Ok(()),
            Some(_) => bad("must match format \"uri\""),
            None => bad("must be string"),
        },
        Ty::Project => match v.as_str() {
            Some(s)
                if (1..=500).contains(&s.len())
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"._/-".contains(&c)) =>
            {
                Ok(())
            }
            Some(_) => bad("must match pattern \"^([a-zA-Z0-9._/-]*)$\""),
            None => bad("must be string"),
        },
        Ty::Object => match v {
            Value::Object(_) => Ok(()),
            _ => bad("must be object"),
        },
        Ty::StrArray => match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => Ok(()),
            _ => bad("must be an array of strings"),
        },
    }
}

/// Check an object against `fields` with `additionalProperties: false`.
pub fn check_object(path: &str, v: &Value, fields: &[Field]) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{path} must be object"));
    };
    let unknown: Vec<&str> = obj
        .keys()
        .filter(|k| !fields.iter().any(|f| f.name == k.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "{path} must NOT have additional properties: {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for f in fields {
        match obj.get(f.name) {
            Some(val) => check_value(&format!("{path}/{}", f.name), f.ty, val)?,
            None if f.required => {
                return Err(format!("{path} must have required property `{}`", f.name))
            }
            None => {}
        }
    }
    Ok(())
}

/// `claim-work-request.json`.
pub fn claim_work(v: &Value) -> Result<(), String> {
    check_object(
        "data",
        v,
        &[
            req("workerGroup", Ty::Ident(38)),
            req("workerId", Ty::Ident(38)),
            req("tasks", Ty::Int(1, 32)),
        ],
    )
}

/// The reasons `task-exception-request.json` allows.
pub const EXCEPTION_REASONS: &[&str] = &[
    "worker-shutdown",
    "malformed-payload",
    "resource-unavailable",
    "internal-error",
    "intermittent-task",
];

/// `task-exception-request.json`.
pub fn task_exception(v: &Value) -> Result<(), String> {
    check_object("data", v, &[req("reason", Ty::Enum(EXCEPTION_REASONS))])
}

/// The reasons an `error` artifact may carry.
pub const ERROR_ARTIFACT_REASONS: &[&str] = &[
    "file-missing-on-worker",
    "invalid-resource-on-worker",
    "too-large-file-on-worker",
    "file-not-readable-on-worker",
];

/// `post-artifact-request.json` (a oneOf selected by `storageType`).
pub fn post_artifact(v: &Value) -> Result<(), String> {
    let st = v.get("storageType").and_then(Value::as_str);
    let fields: &[Field] = match st {
        Some("s3") | Some("object") => &[
            req("storageType", Ty::Enum(&["s3", "object"])),
            req("expires", Ty::DateTime),
            req("contentType", Ty::Str(Some(255))),
            opt("contentLength", Ty::Int(0, i64::MAX)),
        ],
        Some("reference") => &[
            req("storageType", Ty::Enum(&["reference"])),
            req("expires", Ty::DateTime),
            req("url", Ty::Uri),
            req("contentType", Ty::Str(Some(255))),
        ],
        Some("link") => &[
            req("storageType", Ty::Enum(&["link"])),
            req("expires", Ty::DateTime),
            req("artifact", Ty::Str(None)),
            opt("contentType", Ty::Str(Some(255))),
        ],
        Some("error") => &[
            req("storageType", Ty::Enum(&["error"])),
            req("expires", Ty::DateTime),
            req("reason", Ty::Enum(ERROR_ARTIFACT_REASONS)),
            req("message", Ty::Str(Some(4096))),
        ],
        _ => {
            return Err(
                "data/storageType must be one of \"s3\", \"object\", \"reference\", \"link\", \"error\""
                    .into(),
            )
        }
    };
    check_object("data", v, fields)
}

/// `finish-artifact-request.json`.
pub fn finish_artifact(v: &Value) -> Result<(), String> {
    check_object("data", v, &[req("uploadId", Ty::Slug)])
}

fn check_hashes(path: &str, v: &Value) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{path} must be object"));
    };
    for (alg, len) in [("sha256", 64), ("sha512", 128)] {
        if let Some(h) = obj.get(alg) {
            let ok = h.as_str().is_some_and(|s| {
                s.len() == len
                    && s.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
            if !ok {
                return Err(format!(
                    "{path}/{alg} must match pattern \"^[a-z0-9]{{{len}}}$\""
                ));
            }
        }
    }
    Ok(())
}

/// `create-upload-request.json` (object service).
pub fn create_upload(v: &Value) -> Result<(), String> {
    check_object(
        "data",
        v,
        &[
            req("projectId", Ty::Project),
            req("uploadId", Ty::Slug),
            req("expires", Ty::DateTime),
            req("proposedUploadMethods", Ty::Object),
            opt("hashes", Ty::Object),
        ],
    )?;
    if let Some(h) = v.get("hashes") {
        check_hashes("data/hashes", h)?;
    }
    let methods = &v["proposedUploadMethods"];
    check_object(
        "data/proposedUploadMethods",
        methods,
        &[opt("dataInline", Ty::Object), opt("putUrl", Ty::Object)],
    )?;
    if let Some(d) = methods.get("dataInline") {
        check_object(
            "data/proposedUploadMethods/dataInline",
            d,
            &[
                req("contentType", Ty::Str(None)),
                req("objectData", Ty::Str(Some(10926))),
            ],
        )?;
    }
    if let Some(p) = methods.get("putUrl") {
        check_object(
            "data/proposedUploadMethods/putUrl",
            p,
            &[
                req("contentType", Ty::Str(None)),
                req("contentLength", Ty::Int(0, i64::MAX)),
            ],
        )?;
    }
    Ok(())
}

/// `finish-upload-request.json` (object service).
pub fn finish_upload(v: &Value) -> Result<(), String> {
    check_object(
        "data",
        v,
        &[
            req("uploadId", Ty::Slug),
            req("projectId", Ty::Project),
            opt("hashes", Ty::Object),
        ],
    )?;
    if let Some(h) = v.get("hashes") {
        check_hashes("data/hashes", h)?;
    }
    Ok(())
}

/// The properties `create-task-request.json` / `task.json` allow.
pub fn task_definition(v: &Value) -> Result<(), String> {
    const PRIORITIES: &[&str] = &[
        "highest",
        "very-high",
        "high",
        "medium",
        "low",
        "very-low",
        "lowest",
    ];
    check_object(
        "data",
        v,
        &[
            req("provisionerId", Ty::Ident(38)),
            req("workerType", Ty::Ident(38)),
            opt("taskQueueId", Ty::Str(Some(77))),
            opt("schedulerId", Ty::Ident(38)),
            opt("projectId", Ty::Project),
            opt("taskGroupId", Ty::Slug),
            opt("dependencies", Ty::StrArray),
            opt("requires", Ty::Enum(&["all-completed", "all-resolved"])),
            opt("routes", Ty::StrArray),
            opt("priority", Ty::Enum(PRIORITIES)),
            opt("retries", Ty::Int(0, 49)),
            req("created", Ty::DateTime),
            req("deadline", Ty::DateTime),
            opt("expires", Ty::DateTime),
            opt("scopes", Ty::StrArray),
            req("payload", Ty::Object),
            req("metadata", Ty::Object),
            opt("tags", Ty::Object),
            opt("extra", Ty::Object),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slugids_follow_the_v4_pattern() {
        for _ in 0..100 {
            assert!(is_slugid(&super::super::new_task_id()));
        }
        assert!(!is_slugid("not-a-slug"));
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = claim_work(&json!({"workerGroup": "g", "workerId": "w", "tasks": 1, "x": 1}))
            .unwrap_err();
        assert!(e.contains("`x`"), "{e}");
        let e = claim_work(&json!({"workerGroup": "g", "workerId": "w"})).unwrap_err();
        assert!(e.contains("`tasks`"), "{e}");
        let e = task_exception(&json!({"reason": "canceled"})).unwrap_err();
        assert!(e.contains("reason"), "{e}");
    }
}
