//! The aggregated listener's TLS: the serving certificate the APIService's `caBundle` vouches for,
//! and a client certificate required, signed by the front proxy's CA and carrying one of the names
//! the API server publishes. Anything else ends at the handshake, so every request the listener
//! yields came through the Kubernetes API server's proxy and its `X-Remote-*` headers can be
//! believed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::front_proxy::FrontProxy;

/// A handshake that has not finished by then is dropped: a slow client holds no more than a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Yields the connections whose handshake proved them the API server's proxy.
pub struct FrontProxyListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl axum::serve::Listener for FrontProxyListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended only with the listener: wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What the listener trusts and presents: the front proxy as the API server publishes it, and the
/// TLS configuration made from it and the serving certificate.
pub struct Trust {
    pub front_proxy: FrontProxy,
    acceptor: TlsAcceptor,
    serving: (Vec<u8>, Vec<u8>),
}

/// The current [`Trust`], replaced whole when [`keep_fresh`] reads a change.
pub type SharedTrust = Arc<RwLock<Arc<Trust>>>;

/// Where [`Trust`] comes from.
pub struct Sources {
    pub client: kube::Client,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How often the sources are read again: a rotated serving certificate (a renewed Secret, which
/// the kubelet updates in the pod) or front-proxy CA is used from then on, without a restart.
pub const REFRESH: Duration = Duration::from_secs(15);

impl Sources {
    pub async fn load(&self) -> anyhow::Result<Trust> {
        let front_proxy = FrontProxy::read(self.client.clone()).await?;
        let read = |path: &Path, what: &str| {
            std::fs::read(path).with_context(|| format!("cannot read the serving {what} {}", path.display()))
        };
        let serving = (read(&self.cert_file, "certificate")?, read(&self.key_file, "key")?);
        let acceptor = acceptor(&front_proxy, &serving)?;
        Ok(Trust {
            front_proxy,
            acceptor,
            serving,
        })
    }
}

fn acceptor(front_proxy: &FrontProxy, (cert, key): &(Vec<u8>, Vec<u8>)) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(front_proxy.client_ca.as_bytes()) {
        roots
            .add(certificate.context("the front proxy's CA is not PEM")?)
            .context("the front proxy's CA")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the front proxy's CA")?;
    let certificates = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .context("the serving certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key).context("the serving key is not PEM")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates, key)
        .context("the serving certificate and key do not make a pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the sources every [`REFRESH`] and puts a changed [`Trust`] in place; a source that cannot
/// be read (or a certificate without its key yet, mid-rotation) leaves the current one.
pub fn keep_fresh(sources: Sources, shared: SharedTrust) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH).await;
            match sources.load().await {
                Ok(loaded) => {
                    let current = shared.read().expect("trust lock").clone();
                    if loaded.front_proxy != current.front_proxy || loaded.serving != current.serving {
                        tracing::info!(
                            "aggregated listener: serving certificate or front proxy changed; using the new one"
                        );
                        *shared.write().expect("trust lock") = Arc::new(loaded);
                    }
                }
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "aggregated listener: keeping the current TLS"
                ),
            }
        }
    });
}

pub async fn bind(address: SocketAddr, trust: SharedTrust) -> anyhow::Result<FrontProxyListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    let (sender, accepted) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "aggregated listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let trust = trust.read().expect("trust lock").clone();
            let yield_to = sender.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, trust.acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::info!(%peer, %error, "aggregated listener: handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                if let Err(error) = named_as_allowed(&stream, &trust.front_proxy.allowed_names) {
                    tracing::warn!(%peer, %error, "aggregated listener: client certificate refused");
                    return;
                }
                let _ = yield_to.send((stream, peer)).await;
            });
            if sender.is_closed() {
                return;
            }
        }
    });
    Ok(FrontProxyListener { local, accepted })
}

/// The client certificate's common name is one the API server allows (any, when it lists none).
fn named_as_allowed(stream: &TlsStream<TcpStream>, allowed: &[String]) -> anyhow::Result<()> {
    if allowed.is_empty() {
        return Ok(());
    }
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| anyhow!("no client certificate"))?;
    let name = common_name(leaf)?;
    if allowed.contains(&name) {
        Ok(())
    } else {
        Err(anyhow!("its common name {name:?} is not among {allowed:?}"))
    }
}

fn common_name(certificate: &CertificateDer<'_>) -> anyhow::Result<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|error| anyhow!("not an X.509 certificate: {error}"))?;
    let name = parsed
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| anyhow!("no common name"))?
        .as_str()
        .map_err(|error| anyhow!("common name is not text: {error}"))?;
    Ok(name.to_owned())
}
