//! The request a tunnel opens with (`tunneling_config`): a CONNECT to `hostname`, or a POST
//! to `post_path`, with `headers_to_add`, as HTTP/1.1 bytes or an HTTP/2 head.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::http1::Method;
use crate::config::{HeaderAction, Tunneling};
use crate::format::Facts;

/// The tunnel request of one connection, formatted.
pub(super) struct TunnelRequest {
    pub(super) method: Method,
    pub(super) authority: String,
    /// `None` for a CONNECT.
    pub(super) path: Option<String>,
    pub(super) headers: Vec<(String, String)>,
}

impl TunnelRequest {
    pub(super) fn new(config: &Tunneling, facts: &Facts<'_>) -> TunnelRequest {
        let mut authority = String::new();
        config.hostname.render(facts, &mut authority);
        let mut headers: Vec<(String, String)> = Vec::with_capacity(config.headers_to_add.len());
        for add in &config.headers_to_add {
            let mut value = String::new();
            add.value.render(facts, &mut value);
            if value.is_empty() && !add.keep_empty {
                continue;
            }
            let exists = headers.iter().any(|(name, _)| *name == add.name);
            match add.action {
                HeaderAction::Append => {}
                HeaderAction::AddIfAbsent if exists => continue,
                HeaderAction::AddIfAbsent => {}
                HeaderAction::OverwriteIfExists if !exists => continue,
                HeaderAction::Overwrite | HeaderAction::OverwriteIfExists => {
                    headers.retain(|(name, _)| *name != add.name)
                }
            }
            headers.push((add.name.clone(), value));
        }
        let (method, path) = match config.use_post {
            true => (Method::Post, Some(config.post_path.clone())),
            false => (Method::Connect, None),
        };
        TunnelRequest { method, authority, path, headers }
    }

    /// The HTTP/1.1 head: `CONNECT host HTTP/1.1` with `host` and the added headers (Envoy T1),
    /// or a POST whose body, the tunnel, goes chunked.
    pub(super) fn http1(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        match &self.path {
            Some(path) => {
                out.put_slice(b"POST ");
                out.put_slice(path.as_bytes());
            }
            None => {
                out.put_slice(b"CONNECT ");
                out.put_slice(self.authority.as_bytes());
            }
        }
        out.put_slice(b" HTTP/1.1\r\nhost: ");
        out.put_slice(self.authority.as_bytes());
        out.put_slice(b"\r\n");
        if self.path.is_some() {
            out.put_slice(b"transfer-encoding: chunked\r\n");
        }
        for (name, value) in &self.headers {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        out.freeze()
    }

    /// The HTTP/2 head: `:method CONNECT` and `:authority` only (no `:scheme`, `:path` or
    /// `:protocol`), or a POST with `:scheme http` and the path; then the added headers.
    pub(super) fn http2(&self) -> http::Request<()> {
        let uri = match &self.path {
            Some(path) => http::Uri::builder()
                .scheme("http")
                .authority(self.authority.as_str())
                .path_and_query(path.as_str())
                .build()
                .ok(),
            None => http::Uri::try_from(self.authority.as_str()).ok(),
        };
        let mut request = http::Request::new(());
        *request.method_mut() = if self.path.is_some() { http::Method::POST } else { http::Method::CONNECT };
        *request.uri_mut() = uri.unwrap_or_default();
        let fields = request.headers_mut();
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::try_from(name.as_str()), http::HeaderValue::try_from(value.as_str()))
            {
                fields.append(name, value);
            }
        }
        request
    }
}
