//! The OCI distribution API, with every answer read under a bound.
//!
//! `oci-client` reads whole every manifest, referrers index, token and error body a registry
//! sends before its caller can look at the size (oras-project/rust-oci-client#206): a
//! registry, or the token service it names, could make the host allocate without bound by
//! answering without end. rulehost speaks the few requests it needs itself, over reqwest
//! (the HTTP client under `oci-client`): an answer is read a chunk at a time and refused as
//! soon as it passes its bound (a manifest or index 4 MiB, a layer the size its manifest
//! gives, a token 1 MiB), and of an error's body only its first 16 KiB are read, for the
//! message. A push sends a blob whole (`POST` then `PUT ?digest=`, after a `HEAD` that finds
//! it already there) and a manifest with `PUT`.
//!
//! Authentication follows the registry's challenge as docker does: an anonymous request
//! first; on a 401 naming `Bearer`, a token for `repository:REPO:pull` (`pull,push` to push)
//! from the service it names (with the credentials, if any); on one naming `Basic`, the
//! credentials. The header that worked is kept for the repository and access.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode, Url, header};

use super::auth::Credentials;
use super::layout::{self, INDEX_MEDIA_TYPE, Index, MAX_MANIFEST_BYTES};
use super::reference::Reference;

/// The largest token answer read (a JWT of a few kilobytes, in JSON).
pub const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// What is read of an error's body, for its message.
const MAX_ERROR_BYTES: u64 = 16 << 10;
/// A blob's media type on the wire.
const OCTETS: &str = "application/octet-stream";

/// Why a request failed, before it is put in terms of the reference.
#[derive(Debug)]
pub(super) enum Failure {
    /// The registry or its token service refused the credentials (401, 403).
    Denied(String),
    /// 404.
    NotFound(String),
    /// An answer larger than its bound, or not what was asked for.
    Refused(String),
    /// The connection, TLS, or another status.
    Transport(String),
}

impl Failure {
    /// What happened, in words.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Denied(reason)
            | Failure::NotFound(reason)
            | Failure::Refused(reason)
            | Failure::Transport(reason) => reason,
        }
    }
}

/// What a request needs of a repository, for the token asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `pull`.
    Pull,
    /// `pull,push`.
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// A request's body and its media type.
type Body<'a> = Option<(&'a [u8], &'a str)>;

/// Whom a request is made for: the repository, the credentials, and what it needs there
/// (the authorizations kept and the tokens asked are of these).
#[derive(Clone, Copy)]
struct Scope<'a> {
    reference: &'a Reference,
    credentials: &'a Credentials,
    access: Access,
}

impl<'a> Scope<'a> {
    fn pull(reference: &'a Reference, credentials: &'a Credentials) -> Self {
        Scope { reference, credentials, access: Access::Pull }
    }

    fn push(reference: &'a Reference, credentials: &'a Credentials) -> Self {
        Scope { reference, credentials, access: Access::Push }
    }
}

/// The HTTP client of registries, and the authorizations that worked, by repository.
pub(super) struct Distribution {
    http: reqwest::Client,
    insecure: Vec<String>,
    authorizations: Mutex<HashMap<String, header::HeaderValue>>,
}

impl Distribution {
    /// A client that reaches `insecure` hosts over plain HTTP, trusts the certificate
    /// authorities of `ca_files` (PEM, one or more certificates each) besides the system's,
    /// and gives up on a request not answered in full within `timeout` (a registry that
    /// trickles its bytes, each in time for the read timeout, would otherwise hold a pull for
    /// as long as it likes).
    pub fn new(
        insecure: Vec<String>,
        ca_files: &[std::path::PathBuf],
        timeout: Duration,
    ) -> Result<Self, String> {
        // rustls needs its crypto provider chosen once per process (reqwest panics without).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = Vec::new();
        for path in ca_files {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {}", path.display(), crate::errors::with_sources(&e)))?;
            if certificates.is_empty() {
                return Err(format!("{}: no PEM certificate in it", path.display()));
            }
            roots.extend(certificates);
        }
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .timeout(timeout)
            .user_agent(concat!("rulehost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::errors::with_sources(&e))?;
        Ok(Distribution { http, insecure, authorizations: Mutex::new(HashMap::new()) })
    }

    /// `scheme://host/v2/repository/` for `reference`.
    fn base(&self, reference: &Reference) -> String {
        let scheme = if self.insecure.contains(&reference.registry) { "http" } else { "https" };
        let (host, repository) = remote(reference);
        format!("{scheme}://{host}/v2/{repository}/")
    }

    /// The manifest `reference` names (by digest if pinned, else by tag), as sent.
    pub async fn manifest(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        media_type: &str,
    ) -> Result<Vec<u8>, Failure> {
        let url = format!("{}manifests/{}", self.base(reference), manifest_name(reference));
        let response =
            self.send(Method::GET, &url, media_type, Scope::pull(reference, credentials), None).await?;
        read_bounded(response, MAX_MANIFEST_BYTES, "the manifest").await
    }

    /// The digest of the manifest `reference` names now: the registry's
    /// `Docker-Content-Digest` to a HEAD request, else the digest of the manifest itself.
    pub async fn manifest_digest(
        &self,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<String, Failure> {
        let url = format!("{}manifests/{}", self.base(reference), manifest_name(reference));
        let head = self.send(
            Method::HEAD,
            &url,
            layout::MANIFEST_MEDIA_TYPE,
            Scope::pull(reference, credentials),
            None,
        );
        match head.await {
            Ok(response) => {
                let stated = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
                if let Some(digest) = stated.filter(|d| layout::is_sha256(d)) {
                    return Ok(digest.to_owned());
                }
            }
            // A registry that answers HEAD badly (405, 5xx) may still answer GET.
            Err(Failure::Transport(_)) => {}
            Err(refused) => return Err(refused),
        }
        let manifest = self.manifest(reference, credentials, layout::MANIFEST_MEDIA_TYPE).await?;
        Ok(layout::sha256(&manifest))
    }

    /// The blob `digest` of `reference`'s repository, refused past `limit` bytes.
    pub async fn blob(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        digest: &str,
        limit: u64,
    ) -> Result<Vec<u8>, Failure> {
        let url = format!("{}blobs/{digest}", self.base(reference));
        let response = self.send(Method::GET, &url, "*/*", Scope::pull(reference, credentials), None).await?;
        read_bounded(response, limit, "the blob").await
    }

    /// Sends `bytes` as the blob `digest` of `reference`'s repository, unless it is there.
    pub async fn put_blob(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(), Failure> {
        let base = self.base(reference);
        let scope = Scope::push(reference, credentials);
        let blob = format!("{base}blobs/{digest}");
        match self.send(Method::HEAD, &blob, "*/*", scope, None).await {
            Ok(_) => return Ok(()),
            Err(Failure::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        let uploads = format!("{base}blobs/uploads/");
        let started = self.send(Method::POST, &uploads, "*/*", scope, Some((&[], OCTETS))).await?;
        let location =
            started.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                Failure::Transport("the registry started an upload but gave no Location".to_owned())
            })?;
        // A Location may be relative to the request, and may carry a query of its own.
        let mut url = Url::parse(&uploads)
            .and_then(|u| u.join(location))
            .map_err(|e| Failure::Transport(format!("the upload's Location {location:?}: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest);
        self.send(Method::PUT, url.as_str(), "*/*", scope, Some((bytes, OCTETS))).await?;
        Ok(())
    }

    /// Sends `bytes` as the manifest (of `media_type`) that `reference` names, by tag or digest.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), Failure> {
        let url = format!("{}manifests/{}", self.base(reference), manifest_name(reference));
        self.send(Method::PUT, &url, "*/*", Scope::push(reference, credentials), Some((bytes, media_type)))
            .await?;
        Ok(())
    }

    /// The referrers of the pinned `reference` of `artifact_type`: the referrers API, or the
    /// `sha256-<hex>` tag where a registry has no such API (an empty list where it has
    /// neither).
    pub async fn referrers(
        &self,
        pinned: &Reference,
        credentials: &Credentials,
        artifact_type: &str,
    ) -> Result<Index, Failure> {
        let digest = pinned.digest.as_deref().unwrap_or_default();
        let mut url = Url::parse(&format!("{}referrers/{digest}", self.base(pinned)))
            .map_err(|e| Failure::Transport(e.to_string()))?;
        url.query_pairs_mut().append_pair("artifactType", artifact_type);
        let listed =
            self.send(Method::GET, url.as_str(), INDEX_MEDIA_TYPE, Scope::pull(pinned, credentials), None);
        let body = match listed.await {
            Ok(response) => read_bounded(response, MAX_MANIFEST_BYTES, "the referrers index").await?,
            Err(Failure::NotFound(_)) => {
                let tag = pinned.at_tag(&layout::referrers_tag(digest));
                match self.manifest(&tag, credentials, INDEX_MEDIA_TYPE).await {
                    Ok(body) => body,
                    Err(Failure::NotFound(_)) => return Ok(Index::default()),
                    Err(other) => return Err(other),
                }
            }
            Err(other) => return Err(other),
        };
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Refused(format!("the referrers index is not an OCI index: {e}")))
    }

    /// Sends a request, answering the registry's challenge once; a success is returned
    /// unread, a failure with what its body's first bytes say.
    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: &str,
        scope: Scope<'_>,
        body: Body<'_>,
    ) -> Result<reqwest::Response, Failure> {
        let Scope { reference, access, .. } = scope;
        let key = format!("{}/{} {}", reference.registry, reference.repository, access.actions());
        // Made once: a request answered with a challenge is sent again.
        let body = body.map(|(bytes, media_type)| (bytes::Bytes::copy_from_slice(bytes), media_type));
        let kept = self.authorizations.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let request = |authorization: Option<&header::HeaderValue>| {
            let mut request = self.http.request(method.clone(), url).header(header::ACCEPT, accept);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value.clone());
            }
            if let Some((bytes, media_type)) = &body {
                request = request.header(header::CONTENT_TYPE, *media_type).body(bytes.clone());
            }
            request.send()
        };
        let mut response = request(kept.as_ref()).await.map_err(transport)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let Some(challenge) = challenge else { return Err(failed(response).await) };
            let authorization = self.authorize(&challenge, scope).await?;
            response = request(Some(&authorization)).await.map_err(transport)?;
            // A 404 after the challenge is still an answer to these credentials.
            if !matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                self.authorizations.lock().unwrap_or_else(|e| e.into_inner()).insert(key, authorization);
            }
        }
        if response.status().is_success() { Ok(response) } else { Err(failed(response).await) }
    }

    /// The `Authorization` header that answers `challenge`.
    async fn authorize(
        &self,
        challenge: &Challenge,
        scope: Scope<'_>,
    ) -> Result<header::HeaderValue, Failure> {
        let Scope { reference, credentials, access } = scope;
        let basic = match credentials {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credentials::Anonymous => None,
        };
        let value = if challenge.scheme.eq_ignore_ascii_case("basic") {
            basic.ok_or_else(|| Failure::Denied("the registry asks for credentials".to_owned()))?
        } else if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let realm = challenge.param("realm").ok_or_else(|| {
                Failure::Transport(
                    "the registry asks for a bearer token but names no token service".to_owned(),
                )
            })?;
            let mut url =
                Url::parse(realm).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(
                    || Failure::Transport(format!("the token service {realm:?} is not an HTTP URL")),
                )?;
            if url.scheme() == "http" && !self.insecure.contains(&reference.registry) && basic.is_some() {
                return Err(Failure::Transport(format!(
                    "the registry names a token service on plain HTTP ({realm}); credentials are not sent there"
                )));
            }
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = challenge.param("service") {
                    query.append_pair("service", service);
                }
                query.append_pair(
                    "scope",
                    &format!("repository:{}:{}", remote(reference).1, access.actions()),
                );
            }
            let mut request = self.http.get(url);
            if let Some(basic) = &basic {
                request = request.header(header::AUTHORIZATION, basic);
            }
            let response = request.send().await.map_err(transport)?;
            if !response.status().is_success() {
                return Err(match failed(response).await {
                    Failure::Denied(reason) => Failure::Denied(format!("the token service: {reason}")),
                    other => Failure::Transport(format!("the token service: {}", other.reason())),
                });
            }
            let body = read_bounded(response, MAX_TOKEN_BYTES, "the token").await?;
            #[derive(serde::Deserialize)]
            struct TokenAnswer {
                token: Option<String>,
                access_token: Option<String>,
            }
            let answer: TokenAnswer = serde_json::from_slice(&body)
                .map_err(|_| Failure::Transport("the token service's answer is not a token".to_owned()))?;
            let token = answer
                .token
                .or(answer.access_token)
                .ok_or_else(|| Failure::Transport("the token service's answer holds no token".to_owned()))?;
            format!("Bearer {token}")
        } else {
            return Err(Failure::Transport(format!(
                "the registry asks for {:?} authentication, which rulehost does not speak",
                challenge.scheme
            )));
        };
        header::HeaderValue::from_str(&value)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| Failure::Transport("the token service's token is not a header value".to_owned()))
    }
}

/// The host and the repository of `reference` as its registry's API names them: Docker
/// Hub's name is not its API's host, and its one-part names are official images' (`alpine`
/// is `library/alpine`), as docker reads them.
fn remote(reference: &Reference) -> (&str, std::borrow::Cow<'_, str>) {
    match reference.registry.as_str() {
        "docker.io" | "index.docker.io" if !reference.repository.contains('/') => {
            ("registry-1.docker.io", format!("library/{}", reference.repository).into())
        }
        "docker.io" | "index.docker.io" => ("registry-1.docker.io", reference.repository.as_str().into()),
        host => (host, reference.repository.as_str().into()),
    }
}

/// The digest of a pinned reference, else its tag.
fn manifest_name(reference: &Reference) -> &str {
    reference.digest.as_deref().or(reference.tag.as_deref()).unwrap_or("latest")
}

fn transport(error: reqwest::Error) -> Failure {
    let mut reason = crate::errors::with_sources(&error);
    if reason.contains("InvalidContentType") {
        // What rustls says when the server answers TLS in plain HTTP.
        reason.push_str(" (the registry speaks plain HTTP? name it in --insecure-registry)");
    }
    Failure::Transport(reason)
}

/// Reads `response`'s body, refused as soon as it passes `limit` bytes.
async fn read_bounded(mut response: reqwest::Response, limit: u64, what: &str) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure::Refused(format!("{what} is larger than {limit} bytes"));
    let stated = response.content_length().unwrap_or(0);
    if stated > limit {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(stated as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The failure a non-success `response` tells: its status, and the OCI error codes and
/// messages of its body's first [`MAX_ERROR_BYTES`] (or their text, cut short).
async fn failed(mut response: reqwest::Response) -> Failure {
    let status = response.status();
    let mut body = Vec::new();
    while (body.len() as u64) < MAX_ERROR_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BYTES as usize);
    drop(response);
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<OciError>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let said = match serde_json::from_slice::<Envelope>(&body) {
        Ok(envelope) => envelope
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body).trim().chars().take(200).collect(),
    };
    let reason = if said.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {said}") };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Denied(reason),
        StatusCode::NOT_FOUND => Failure::NotFound(reason),
        _ => Failure::Transport(reason),
    }
}

/// A `WWW-Authenticate` challenge: its scheme and its parameters.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"`;
    /// values quoted (with backslash escapes) or not.
    fn parse(text: &str) -> Option<Challenge> {
        let text = text.trim();
        let (scheme, mut rest) = text.split_once(' ').unwrap_or((text, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if rest.is_empty() {
                break;
            }
            let (name, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((at, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = Some(at + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((name.trim().to_ascii_lowercase(), value));
            rest = next;
        }
        Some(Challenge { scheme: scheme.to_owned(), params })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;

    /// A registry on loopback whose every request is answered by `answer`, given the
    /// request's first line and the connection; its `host:port`.
    fn local_registry(answer: impl Fn(&str, &mut std::net::TcpStream) + Send + 'static) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                answer(&request, &mut stream);
            }
        });
        host
    }

    /// A registry that states a 64-byte manifest and sends a byte of it every 100 ms, each
    /// well within the read timeout.
    fn trickling_registry() -> String {
        local_registry(|_, stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n");
            for _ in 0..64 {
                if stream.write_all(b" ").and_then(|()| stream.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// A registry that answers HEAD with 405 and GET with `manifest`.
    fn registry_without_head(manifest: &'static [u8]) -> String {
        local_registry(move |request, stream| {
            if request.starts_with("HEAD") {
                let _ = stream.write_all(
                    b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            } else {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(manifest);
            }
        })
    }

    /// A client of the local registry at `host` (plain HTTP) giving up after `timeout`, a
    /// reference there, and a runtime to make its requests on.
    fn client_of(host: &str, timeout: Duration) -> (Distribution, Reference, tokio::runtime::Runtime) {
        let distribution = Distribution::new(vec![host.to_owned()], &[], timeout).unwrap();
        let reference = Reference::parse(&format!("oci://{host}/detect/rule:1")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (distribution, reference, runtime)
    }

    #[test]
    fn a_tags_digest_comes_from_the_manifest_where_head_is_not_answered() {
        let manifest = br#"{"schemaVersion":2}"#;
        let (distribution, reference, runtime) =
            client_of(&registry_without_head(manifest), Duration::from_secs(10));
        let digest =
            runtime.block_on(distribution.manifest_digest(&reference, &Credentials::Anonymous)).unwrap();
        assert_eq!(digest, layout::sha256(manifest));
    }

    #[test]
    fn references_are_reached_where_docker_reaches_them() {
        let distribution =
            Distribution::new(vec!["127.0.0.1:5000".into()], &[], Duration::from_secs(1)).unwrap();
        let base = |text: &str| distribution.base(&Reference::parse(text).unwrap());
        assert_eq!(base("oci://127.0.0.1:5000/detect/rule:1"), "http://127.0.0.1:5000/v2/detect/rule/");
        assert_eq!(base("oci://ghcr.io/org/rules/soft-cell:1"), "https://ghcr.io/v2/org/rules/soft-cell/");
        assert_eq!(base("oci://docker.io/org/rule:1"), "https://registry-1.docker.io/v2/org/rule/");
        assert_eq!(base("oci://docker.io/alpine:3"), "https://registry-1.docker.io/v2/library/alpine/");
        assert_eq!(base("oci://index.docker.io/alpine"), "https://registry-1.docker.io/v2/library/alpine/");
    }

    #[test]
    fn a_request_not_answered_in_full_in_time_is_given_up() {
        let (distribution, reference, runtime) = client_of(&trickling_registry(), Duration::from_secs(1));
        let answer = runtime.block_on(distribution.manifest(
            &reference,
            &Credentials::Anonymous,
            layout::MANIFEST_MEDIA_TYPE,
        ));
        match answer {
            Err(Failure::Transport(reason)) => assert!(reason.contains("timed out"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn challenges_are_read_as_registries_write_them() {
        let hub = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull""#,
        )
        .unwrap();
        assert_eq!(hub.scheme, "Bearer");
        assert_eq!(hub.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(hub.param("service"), Some("registry.docker.io"));
        assert_eq!(hub.param("scope"), Some("repository:library/a:pull"));
        let spaced = Challenge::parse(r#"bearer Realm = "http://h/t" , service=plain, x="a\"b,c""#).unwrap();
        assert_eq!(spaced.param("realm"), Some("http://h/t"));
        assert_eq!(spaced.param("service"), Some("plain"));
        assert_eq!(spaced.param("x"), Some(r#"a"b,c"#));
        assert_eq!(Challenge::parse(r#"Basic realm="test""#).unwrap().scheme, "Basic");
        assert_eq!(Challenge::parse("Basic").unwrap().params, Vec::new());
        assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#), None);
        assert_eq!(Challenge::parse("Bearer realm"), None);
        assert_eq!(Challenge::parse(""), None);
    }
}
