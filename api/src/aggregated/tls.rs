//! The aggregated listener's TLS: the serving certificate the APIService's `caBundle` vouches for,
//! and a client certificate required, signed by the front proxy's CA and carrying one of the names
//! the API server publishes. Anything else ends at the handshake, so every request the listener
//! yields came through the Kubernetes API server's proxy and its `X-Remote-*` headers can be
//! believed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
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

pub async fn bind(
    address: SocketAddr,
    cert_file: &Path,
    key_file: &Path,
    front_proxy: &FrontProxy,
) -> anyhow::Result<FrontProxyListener> {
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
    let certificates = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the serving certificate {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("cannot read the serving key {}", key_file.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates, key)
        .context("the serving certificate and key do not make a pair")?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    let (sender, accepted) = mpsc::channel(64);
    let allowed = Arc::new(front_proxy.allowed_names.clone());
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
            let (acceptor, yield_to, allowed) = (acceptor.clone(), sender.clone(), allowed.clone());
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::info!(%peer, %error, "aggregated listener: handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                if let Err(error) = named_as_allowed(&stream, &allowed) {
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
