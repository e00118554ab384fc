//! The operator's side of the session queues: one shared AMQP connection to declare them, read
//! their backlog and delete them (the topology itself is in the `queues` crate).

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use queues::dead_letter_queue;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(std::time::Duration),
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
            let fresh = Connection::connect(&self.url, ConnectionProperties::default()).await?;
            let channel = fresh.create_channel().await?;
            *connection = Some(fresh);
            Ok::<_, QueueError>(channel)
        };
        tokio::time::timeout(BROKER_TIMEOUT, open)
            .await
            .map_err(|_| QueueError::Timeout(BROKER_TIMEOUT))?
    }
    /// Declares (idempotently) the session's queue and what it needs (see the `queues` crate).
    pub async fn declare(&self, queue: &str, max_bytes: i64) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        queues::declare_session_queue(&channel, queue, max_bytes).await?;
        let _ = channel.close(200, "".into()).await;
        Ok(())
    }

    /// Messages waiting in the queue (a passive declare: it fails if the queue is missing).
    pub async fn backlog(&self, queue: &str) -> Result<u32, QueueError> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let state = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await?;
        let _ = channel.close(200, "".into()).await;
        Ok(state.message_count())
    }

    /// Deletes the queue and its dead-letter queue (missing ones are fine).
    pub async fn delete(&self, queue: &str) -> Result<(), QueueError> {
        for name in [queue.to_owned(), dead_letter_queue(queue)] {
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
