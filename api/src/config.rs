use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    Tokens,
    Kubernetes,
}

/// Serves the REST API over what Trawl captured (from PostgreSQL only) and the web UI.
///
/// Every flag can also be given as the `TRAWL_*` environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "trawl-api", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TRAWL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL connection URL.
    #[arg(long, env = "TRAWL_DATABASE_URL")]
    pub database_url: String,

    /// Who callers are: `tokens` (the tokens file; without one the API is open, for local use
    /// only) or `kubernetes` (bearer tokens the cluster accepts, through TokenReview, and what
    /// RBAC lets them get per session namespace, through SubjectAccessReview).
    #[arg(long, env = "TRAWL_AUTH", value_enum, default_value_t = AuthMode::Tokens)]
    pub auth: AuthMode,

    /// File of bearer tokens with their scopes (`--auth tokens`).
    #[arg(long, env = "TRAWL_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Audiences a token must be issued for (`--auth kubernetes`), comma-separated; e.g. `trawl`
    /// for tokens from `kubectl create token NAME --audience trawl`. Empty: the API server's own.
    #[arg(long, env = "TRAWL_TOKEN_AUDIENCES", value_delimiter = ',')]
    pub token_audiences: Vec<String>,

    /// Folder of the built web UI, served at `/`.
    #[arg(long, env = "TRAWL_STATIC_DIR", default_value = "frontend/dist")]
    pub static_dir: PathBuf,

    /// Longest a request's database statement may run before it is cancelled (a 503 saying so).
    /// The pcap export, which streams one long statement, is exempt.
    #[arg(long, env = "TRAWL_STATEMENT_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub statement_timeout: std::time::Duration,

    /// Largest page of packets or flows one request may ask for.
    #[arg(long, env = "TRAWL_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: u32,

    /// Also serve the API as the Kubernetes aggregated API `data.trawl.dev/v1` on this address
    /// (TLS, for the API server's front proxy only), so that any kubeconfig identity (client
    /// certificates, OIDC, exec plugins) reaches it through the API server. Needs `--auth
    /// kubernetes`, `--tls-cert-file` and `--tls-key-file`.
    #[arg(long, env = "TRAWL_AGGREGATED_LISTEN", requires_all = ["tls_cert_file", "tls_key_file"])]
    pub aggregated_listen: Option<SocketAddr>,

    /// PEM serving certificate of the aggregated API (the APIService's caBundle signs it).
    #[arg(long, env = "TRAWL_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of `--tls-cert-file`.
    #[arg(long, env = "TRAWL_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
}
