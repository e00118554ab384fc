//! The operator's side of the session queues: one shared AMQP connection to declare them, read
//! their backlog and delete them (the topology itself is in the `queues` crate).

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// The queue type a session asked for.
pub fn kind(asked: crds::QueueType) -> queues::QueueType {
    match asked {
        crds::QueueType::Classic => queues::QueueType::Classic,
        crds::QueueType::Quorum => queues::QueueType::Quorum,
    }
}

/// A reconcile must never hang on the broker: every broker conversation is bounded.
const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One AMQP connection shared by every reconcile (a channel per conversation), opened again when
/// it breaks: opening a connection per call cost more than the rest of a reconcile together.
pub struct Broker {
    url: String,
    connection: tokio::sync::Mutex<Option<Connection>>,
}

impl Broker {
    pub fn new(url: String) -> Self {
        Self {
            url,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<lapin::Channel, QueueError> {
        let open = async {
            let mut connection = self.connection.lock().await;
            if let Some(live) = connection.as_ref().filter(|c| c.status().connected())
                && let Ok(channel) = live.create_channel().await
            {
                return Ok(channel);
            }
            let fresh = queues::connect(&self.url, ConnectionProperties::default()).await?;
            let channel = fresh.create_channel().await?;
            *connection = Some(fresh);
            Ok::<_, QueueError>(channel)
        };
        tokio::time::timeout(BROKER_TIMEOUT, open)
            .await
            .map_err(|_| QueueError::Timeout(BROKER_TIMEOUT))?
    }
    /// Declares (idempotently) the session's shard queues and what they need (see the `queues` crate).
    pub async fn declare(
        &self,
        queue: &str,
        shards: u16,
        max_bytes: i64,
        kind: queues::QueueType,
    ) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        queues::declare_session_queue(&channel, queue, shards, max_bytes, kind).await?;
        let _ = channel.close(200, "".into()).await;
        Ok(())
    }

    /// Messages waiting in the session's shard queues together (passive declares: they fail if
    /// a queue is missing).
    pub async fn backlog(&self, queue: &str, shards: u16) -> Result<u32, QueueError> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut waiting = 0u32;
        for shard in 0..shards.max(1) {
            let name = queues::shard_queue(queue, shard);
            let state = channel
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await?;
            waiting = waiting.saturating_add(state.message_count());
        }
        let _ = channel.close(200, "".into()).await;
        Ok(waiting)
    }

    /// Deletes the session's shard queues and its dead-letter queue (missing ones are fine).
    pub async fn delete(&self, queue: &str, shards: u16) -> Result<(), QueueError> {
        for name in queues::session_queues(queue, shards) {
            let channel = self.channel().await?;
            match channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
            {
                Ok(_) => {}
                // Already gone: what cleanup wants.
                Err(error) if error.to_string().contains("NOT_FOUND") => {}
                Err(error) => return Err(error.into()),
            }
            let _ = channel.close(200, "".into()).await;
        }
        Ok(())
    }
}
