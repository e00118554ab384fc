//! What the Kubernetes API server publishes about its front proxy, in the ConfigMap
//! `kube-system/extension-apiserver-authentication` (readable through the Role
//! `extension-apiserver-authentication-reader`): the CA of its client certificate, the names that
//! certificate may carry and the headers that name the caller. Read as every aggregated API
//! server reads them (k8s.io/apiserver's requestheader authenticator).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::auth::kubernetes::Identity;

const NAMESPACE: &str = "kube-system";
const NAME: &str = "extension-apiserver-authentication";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontProxy {
    /// PEM: the CA that signs the API server's proxy client certificate.
    pub client_ca: String,
    /// Common names the client certificate may carry; empty: any the CA signed.
    pub allowed_names: Vec<String>,
    username_headers: Vec<String>,
    group_headers: Vec<String>,
    extra_prefixes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrontProxyError {
    #[error("cannot read {NAMESPACE}/{NAME} ({0}); the API server publishes its front proxy there")]
    Read(String),
    #[error(
        "{NAMESPACE}/{NAME} has no requestheader-client-ca-file: the API server runs without an aggregation layer (--requestheader-client-ca-file)"
    )]
    NoAggregation,
    #[error("{NAMESPACE}/{NAME}: {key} is not a JSON list of strings")]
    Malformed { key: &'static str },
}

impl FrontProxy {
    pub async fn read(client: kube::Client) -> Result<Self, FrontProxyError> {
        let map = Api::<ConfigMap>::namespaced(client, NAMESPACE)
            .get(NAME)
            .await
            .map_err(|error| FrontProxyError::Read(error.to_string()))?;
        Self::from_data(&map.data.unwrap_or_default())
    }

    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, FrontProxyError> {
        let client_ca = data
            .get("requestheader-client-ca-file")
            .filter(|pem| !pem.trim().is_empty())
            .ok_or(FrontProxyError::NoAggregation)?
            .clone();
        let list = |key: &'static str| -> Result<Vec<String>, FrontProxyError> {
            match data.get(key) {
                None => Ok(Vec::new()),
                Some(json) => serde_json::from_str(json).map_err(|_| FrontProxyError::Malformed { key }),
            }
        };
        let lowercase = |names: Vec<String>| names.into_iter().map(|name| name.to_ascii_lowercase()).collect();
        Ok(Self {
            client_ca,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: lowercase(list("requestheader-username-headers")?),
            group_headers: lowercase(list("requestheader-group-headers")?),
            extra_prefixes: lowercase(list("requestheader-extra-headers-prefix")?),
        })
    }

    /// The caller the API server names in the request's headers: the first username header that
    /// is set, every value of the group headers, and the extras (the header's name after the
    /// prefix, percent-decoded, is the key). `None` without a username (the availability check).
    pub fn identity(&self, headers: &HeaderMap) -> Option<Identity> {
        let text = |value: &axum::http::HeaderValue| value.to_str().ok().map(str::to_owned);
        let username = self
            .username_headers
            .iter()
            .find_map(|header| headers.get(header.as_str()).and_then(text))
            .filter(|name| !name.is_empty())?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|header| headers.get_all(header.as_str()).iter().filter_map(text))
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            let key = self
                .extra_prefixes
                .iter()
                .find_map(|prefix| name.as_str().strip_prefix(prefix.as_str()));
            if let (Some(key), Some(value)) = (key, text(value)) {
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .to_lowercase();
                extra.entry(key).or_default().push(value);
            }
        }
        Some(Identity {
            username,
            // The API server sends the UID in X-Remote-Uid only from 1.32 on, behind a gate.
            uid: headers.get("x-remote-uid").and_then(text).unwrap_or_default(),
            groups,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> BTreeMap<String, String> {
        [
            ("requestheader-client-ca-file", "-----BEGIN CERTIFICATE-----\n..."),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            ("requestheader-extra-headers-prefix", r#"["X-Remote-Extra-"]"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn the_headers_name_the_caller() {
        let front_proxy = FrontProxy::from_data(&published()).unwrap();
        assert_eq!(front_proxy.allowed_names, ["front-proxy-client"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", "alice@example.com".parse().unwrap());
        headers.append("x-remote-group", "devs".parse().unwrap());
        headers.append("x-remote-group", "system:authenticated".parse().unwrap());
        headers.append("x-remote-extra-scopes", "openid".parse().unwrap());
        headers.append("x-remote-extra-scopes", "email".parse().unwrap());
        headers.append("x-remote-extra-acme.com%2Fproject", "trawl".parse().unwrap());
        let identity = front_proxy.identity(&headers).unwrap();
        assert_eq!(identity.username, "alice@example.com");
        assert_eq!(identity.groups, ["devs", "system:authenticated"]);
        assert_eq!(identity.extra["scopes"], ["openid", "email"]);
        assert_eq!(identity.extra["acme.com/project"], ["trawl"]);
        assert!(
            front_proxy.identity(&HeaderMap::new()).is_none(),
            "no user, no identity"
        );
    }

    #[test]
    fn an_api_server_without_aggregation_is_named() {
        let mut data = published();
        data.remove("requestheader-client-ca-file");
        let error = FrontProxy::from_data(&data).unwrap_err().to_string();
        assert!(error.contains("--requestheader-client-ca-file"), "{error}");
        let mut data = published();
        data.insert("requestheader-allowed-names".into(), "front-proxy-client".into());
        assert!(matches!(
            FrontProxy::from_data(&data),
            Err(FrontProxyError::Malformed {
                key: "requestheader-allowed-names"
            })
        ));
    }
}
