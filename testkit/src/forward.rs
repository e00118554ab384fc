//! TCP forwarding from an address pods can reach to a service on the host's loopback.
//!
//! The test's PostgreSQL and RabbitMQ listen on 127.0.0.1 only. Pods on the real node reach the
//! host at the node's bridge address; a forwarder there hands each connection on to loopback, so
//! the services keep their loopback-only configuration (and RabbitMQ's `guest`, which may only
//! log in from loopback, keeps working).

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A listener on `address` that forwards every connection to a target; stops when dropped.
pub struct Forward {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Forward {
    /// Listens on a free port of `ip` and forwards to `target`.
    pub async fn start(ip: IpAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("listen on {ip} to forward to {target}: {e}"));
        let address = listener.local_addr().expect("a bound listener has an address");
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { address, task }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
