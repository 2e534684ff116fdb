//! Hawk verification, Taskcluster temporary-credential certificates and scope checks,
//! computed the way the Taskcluster auth service does.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// Clock skew the auth service tolerates on certificate start/expiry (5 minutes).
const CERT_SKEW_MS: i64 = 5 * 60 * 1000;
/// Clock skew tolerated on the Hawk timestamp.
const HAWK_TS_SKEW: Duration = Duration::from_secs(60);

/// A permanent client known to the fake auth service.
#[derive(Clone, Debug)]
pub struct Client {
    pub access_token: String,
    pub scopes: Vec<String>,
}

/// The certificate embedded in temporary credentials, as the auth service signs it.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Certificate {
    pub version: u32,
    pub scopes: Vec<String>,
    pub start: i64,
    pub expiry: i64,
    pub seed: String,
    pub signature: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
}

/// Temporary credentials minted by the fake (clientId, accessToken, certificate JSON).
#[derive(Clone, Debug)]
pub struct TempCreds {
    pub client_id: String,
    pub access_token: String,
    pub certificate: String,
}

fn hmac_sha256(key: &str, data: &[u8]) -> Vec<u8> {
    hawk::Key::new(key.as_bytes(), hawk::DigestAlgorithm::Sha256)
        .and_then(|k| k.sign(data))
        .expect("HMAC-SHA256 with any key cannot fail")
}

/// The temporary accessToken: HMAC-SHA256(issuer accessToken, seed), URL-safe base64, no padding.
pub fn temp_access_token(issuer_token: &str, seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256(issuer_token, seed.as_bytes()))
}

/// The certificate signature over the canonical lines, as `taskcluster-lib-client` computes it.
pub fn certificate_signature(cert: &Certificate, client_id: &str, issuer_token: &str) -> String {
    let mut lines = vec![format!("version:{}", cert.version)];
    if let Some(issuer) = &cert.issuer {
        lines.push(format!("clientId:{client_id}"));
        lines.push(format!("issuer:{issuer}"));
    }
    lines.push(format!("seed:{}", cert.seed));
    lines.push(format!("start:{}", cert.start));
    lines.push(format!("expiry:{}", cert.expiry));
    lines.push("scopes:".to_string());
    lines.extend(cert.scopes.iter().cloned());
    STANDARD.encode(hmac_sha256(issuer_token, lines.join("\n").as_bytes()))
}

/// Mint named temporary credentials issued by `issuer`, like `createTemporaryCredentials`.
pub fn mint(
    issuer: &str,
    issuer_token: &str,
    client_id: &str,
    start_ms: i64,
    expiry_ms: i64,
    scopes: Vec<String>,
) -> TempCreds {
    let seed = format!("{}{}", super::new_task_id(), super::new_task_id());
    let mut cert = Certificate {
        version: 1,
        scopes,
        start: start_ms,
        expiry: expiry_ms,
        seed,
        signature: String::new(),
        issuer: Some(issuer.to_string()),
    };
    cert.signature = certificate_signature(&cert, client_id, issuer_token);
    TempCreds {
        client_id: client_id.to_string(),
        access_token: temp_access_token(issuer_token, &cert.seed),
        certificate: serde_json::to_string(&cert).expect("certificate serializes"),
    }
}

pub use crate::task::scopes::satisfies;

/// Who signed a request, once the signature and any certificate check out.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// Why authentication failed (the message of a 401 `AuthenticationFailed`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ext {
    certificate: Option<serde_json::Value>,
    authorized_scopes: Option<Vec<String>>,
}

/// The clientId named in a Hawk header, without verifying anything (for recording).
pub fn claimed_client_id(authorization: Option<&str>) -> Option<String> {
    let value = authorization?.strip_prefix("Hawk ")?;
    hawk::Header::from_str(value).ok()?.id
}

/// What is needed to check one request's Hawk header.
pub struct HawkRequest<'a> {
    pub authorization: Option<&'a str>,
    pub method: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// Raw (still percent-encoded) path, without query.
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// Verify a request: Hawk MAC, payload hash (when given), timestamp, certificate.
/// Returns `Ok(None)` for an unauthenticated request (anonymous scopes apply).
pub fn authenticate(
    req: &HawkRequest<'_>,
    clients: &HashMap<String, Client>,
    now_ms: i64,
) -> Result<Option<Caller>, AuthError> {
    let Some(auth) = req.authorization else {
        return Ok(None);
    };
    let value = auth
        .strip_prefix("Hawk ")
        .ok_or_else(|| AuthError("Authorization header is not a Hawk header".into()))?;
    let header = hawk::Header::from_str(value)
        .map_err(|e| AuthError(format!("Bad Hawk Authorization header: {e}")))?;
    let client_id = header
        .id
        .clone()
        .ok_or_else(|| AuthError("Hawk header has no id".into()))?;

    let ext: Option<Ext> = match &header.ext {
        Some(e) if !e.is_empty() => {
            let raw = STANDARD
                .decode(e)
                .map_err(|_| AuthError("Failed to parse ext: not base64".into()))?;
            Some(
                serde_json::from_slice(&raw)
                    .map_err(|_| AuthError("Failed to parse ext: not JSON".into()))?,
            )
        }
        _ => None,
    };

    let (access_token, mut scopes) = match ext.as_ref().and_then(|e| e.certificate.clone()) {
        Some(cert) => {
            let cert: Certificate = match cert {
                serde_json::Value::String(s) => serde_json::from_str(&s),
                v => serde_json::from_value(v),
            }
            .map_err(|e| AuthError(format!("ext.certificate is malformed: {e}")))?;
            let (token, scopes) = verify_certificate(&cert, &client_id, clients, now_ms)?;
            (token, scopes)
        }
        None => {
            let client = clients
                .get(&client_id)
                .ok_or_else(|| AuthError(format!("Client `{client_id}` not found")))?;
            (client.access_token.clone(), client.scopes.clone())
        }
    };

    let key = hawk::Key::new(access_token.as_bytes(), hawk::DigestAlgorithm::Sha256)
        .map_err(|e| AuthError(format!("bad key: {e}")))?;
    let payload_hash = if header.hash.is_some() {
        let ct = req
            .content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(
            hawk::PayloadHasher::hash(ct.as_bytes(), hawk::DigestAlgorithm::Sha256, req.body)
                .map_err(|e| AuthError(format!("hash error: {e}")))?,
        )
    } else {
        None
    };
    // Hawk's resource is path + query; the Rust client signs the path alone. Accept both.
    let mut resources = vec![req.path.to_string()];
    if let Some(q) = req.query {
        resources.insert(0, format!("{}?{}", req.path, q));
    }
    let ok = resources.iter().any(|resource| {
        let mut b = hawk::RequestBuilder::new(req.method, req.host, req.port, resource);
        if let Some(h) = &payload_hash {
            b = b.hash(&h[..]);
        }
        b.request().validate_header(&header, &key, HAWK_TS_SKEW)
    });
    if !ok {
        return Err(AuthError(format!(
            "Hawk signature of client `{client_id}` is invalid (bad MAC, payload hash or timestamp)"
        )));
    }
    if let Some(limit) = ext.and_then(|e| e.authorized_scopes) {
        if let Some(missing) = limit.iter().find(|l| !satisfies(&scopes, l)) {
            return Err(AuthError(format!(
                "authorizedScopes `{missing}` is not satisfied by the scopes of `{client_id}`"
            )));
        }
        scopes = limit;
    }
    Ok(Some(Caller { client_id, scopes }))
}

/// Check a certificate as the auth service does; returns the derived access token and scopes.
fn verify_certificate(
    cert: &Certificate,
    client_id: &str,
    clients: &HashMap<String, Client>,
    now_ms: i64,
) -> Result<(String, Vec<String>), AuthError> {
    if cert.version != 1 {
        return Err(AuthError("ext.certificate.version must be 1".into()));
    }
    let issuer_id = cert.issuer.as_deref().unwrap_or(client_id);
    if cert.issuer.is_some() && issuer_id == client_id {
        return Err(AuthError(
            "ext.certificate.issuer must differ from the supplied clientId".into(),
        ));
    }
    let issuer = clients
        .get(issuer_id)
        .ok_or_else(|| AuthError(format!("Certificate issuer `{issuer_id}` not found")))?;
    if cert.start > now_ms + CERT_SKEW_MS {
        return Err(AuthError("ext.certificate.start > now".into()));
    }
    if cert.expiry < now_ms - CERT_SKEW_MS {
        return Err(AuthError("ext.certificate.expiry < now".into()));
    }
    if cert.expiry - cert.start > 31 * 24 * 3600 * 1000 {
        return Err(AuthError(
            "ext.certificate cannot last longer than 31 days".into(),
        ));
    }
    let expected = certificate_signature(cert, client_id, &issuer.access_token);
    if expected != cert.signature {
        return Err(AuthError("ext.certificate.signature is not valid".into()));
    }
    for s in &cert.scopes {
        if !satisfies(&issuer.scopes, s) {
            return Err(AuthError(format!(
                "ext.certificate issuer `{issuer_id}` doesn't have sufficient scopes (`{s}`)"
            )));
        }
    }
    Ok((
        temp_access_token(&issuer.access_token, &cert.seed),
        cert.scopes.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_certificate_matches_taskcluster_crate_format() {
        let creds = mint(
            "issuer",
            "secret",
            "temp/1",
            1_000,
            2_000,
            vec!["a:b".into()],
        );
        let cert: Certificate = serde_json::from_str(&creds.certificate).unwrap();
        assert_eq!(cert.version, 1);
        assert_eq!(cert.issuer.as_deref(), Some("issuer"));
        assert_eq!(
            cert.signature,
            certificate_signature(&cert, "temp/1", "secret")
        );
        assert_eq!(creds.access_token, temp_access_token("secret", &cert.seed));
    }

    #[test]
    fn scopes_star_matches_suffix() {
        assert!(satisfies(&["queue:*".into()], "queue:claim-work:a/b"));
        assert!(!satisfies(&["queue:claim".into()], "queue:claim-work:a/b"));
        assert!(satisfies(&["*".into()], "anything"));
    }
}
