//! Each test's database and vhost exist while the test runs and are gone afterwards.
//!
//! Run: `cargo test -p testkit --test services` (after `bash hack/services.sh`)

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use sqlx::Connection;
use testkit::postgres::{DEFAULT_ADMIN_URL, TestDatabase};
use testkit::rabbitmq::TestVhost;

#[tokio::test]
async fn test_database_is_private_and_dropped() {
    let database = TestDatabase::create().await;
    let name = database.name.clone();
    let pool = database.pool().await;
    sqlx::query("CREATE TABLE probe (id int)").execute(&pool).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, name);
    pool.close().await;
    drop(database);

    let mut admin = sqlx::PgConnection::connect(DEFAULT_ADMIN_URL).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "database {name} was not dropped");
}

#[tokio::test]
async fn test_vhost_takes_queues_and_is_deleted() {
    let vhost = TestVhost::create();
    let connection = lapin::Connection::connect(&vhost.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare("probe".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let queue = vhost.get(&format!("/api/queues/{}/probe", vhost.name)).unwrap();
    assert_eq!(queue["name"], "probe");
    connection.close(0, "done".into()).await.unwrap();

    let (name, probe) = (vhost.name.clone(), TestVhost::create());
    drop(vhost);
    let error = probe.get(&format!("/api/vhosts/{name}")).unwrap_err();
    assert!(
        matches!(error, ureq::Error::StatusCode(404)),
        "vhost {name} still exists: {error}"
    );
}

#[tokio::test]
async fn private_broker_keeps_durable_messages_across_a_restart() {
    use lapin::options::{BasicGetOptions, BasicPublishOptions};
    let mut broker = testkit::rabbitmq::PrivateBroker::start();
    let connection = lapin::Connection::connect(&broker.amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare("kept".into(), durable, FieldTable::default())
        .await
        .unwrap();
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    channel
        .basic_publish(
            "".into(),
            "kept".into(),
            BasicPublishOptions::default(),
            b"hello",
            persistent,
        )
        .await
        .unwrap();
    broker.restart();

    let connection = lapin::Connection::connect(&broker.amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("kept".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the message survived");
    assert_eq!(message.delivery.data, b"hello");
}
