//! The session every builder and decision test starts from: the example a user applies, as the
//! API server returns it (name, namespace, uid and generation set), and the operator's config.

use crds::CaptureSession;

use super::PodConfig;

pub fn session() -> CaptureSession {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/capture.yaml")).unwrap();
    let mut session: CaptureSession = serde_yaml::from_str(&text).unwrap();
    session.metadata.namespace = Some("team-a".into());
    session.metadata.uid = Some("0123456789abcdef".into());
    session.metadata.generation = Some(1);
    session
}

pub fn pod_config() -> PodConfig {
    PodConfig {
        sniffer_image: "sniffer:1".into(),
        parser_image: "parser:1".into(),
        pod_amqp_url: "amqp://rabbitmq:5672/%2f".into(),
        pod_database_url: Some("postgres://trawl:secret@postgresql/trawl".into()),
        privileged_sniffers: false,
        namespace: "trawl-system".into(),
    }
}
