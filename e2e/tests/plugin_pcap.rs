//! `kubectl trawl pcap` against a real trawl-api over a real capture: the stored packets as a
//! pcapng file tshark reads, and `--follow` on standard output piped into `tshark -r -` while
//! packets are captured, as `| wireshark -k -i -` would take them.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test plugin_pcap`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::{Pipeline, PipelineOptions, TrawlApi};
use testkit::process::workspace_binary;

const DEADLINE: Duration = Duration::from_secs(120);

/// A kubeconfig whose identity has a token (the plugin sends it to the API) and whose cluster is
/// never contacted by `pcap`.
fn kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: e2e\n\
         clusters: [{name: e2e, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: e2e, user: {token: e2e-token}}]\n\
         contexts: [{name: e2e, context: {cluster: e2e, user: e2e}}]\n",
    )
    .unwrap();
    path
}

fn tshark_count(file: &std::path::Path) -> usize {
    let output = Command::new("tshark").arg("-r").arg(file).output().expect("tshark");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().count()
}

#[tokio::test]
async fn pcap_writes_the_stored_packets_and_follows_new_ones_into_tshark() {
    let mut pipeline = Pipeline::start(PipelineOptions::default()).await;
    let work = std::env::temp_dir().join(format!("trawl-plugin-pcap-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&work).unwrap();
    let config = kubeconfig(&work);
    pipeline.offer(150, 2_000);
    testkit::wait_until("the first packets to be stored", DEADLINE, || async {
        (pipeline.stored().await >= 150).then_some(())
    })
    .await;
    let api = TrawlApi::start(&pipeline.database.url(), &pipeline.session).await;
    let url = format!("http://127.0.0.1:{}", api.port);
    let plugin = || {
        let mut command = Command::new(workspace_binary("kubectl-trawl", "kubectl-trawl"));
        command
            .env("KUBECONFIG", &config)
            .args(["pcap", &pipeline.session, "--api", &url]);
        command
    };

    // Stored packets, to a file.
    let file = work.join("stored.pcapng");
    let mut stored = plugin();
    stored.arg("-o").arg(&file);
    let output = stored.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(tshark_count(&file), 150);

    // Live, into tshark through a pipe.
    let mut follow = plugin();
    follow.arg("--follow").stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut following = follow.spawn().unwrap();
    let mut tshark = Command::new("tshark")
        .args(["-l", "-r", "-"])
        .stdin(following.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = BufReader::new(tshark.stdout.take().unwrap());
    std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .for_each(|line| drop(lines.send(line)))
    });
    // Offered once the live export has begun (it serves what is stored from its start on).
    let mut said = BufReader::new(following.stderr.take().unwrap()).lines();
    let started = said.next().and_then(Result::ok).unwrap_or_default();
    assert!(started.starts_with("Following "), "{started:?}");
    pipeline.offer(100, 2_000);
    for i in 0..100 {
        received
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("live packet {} of 100 did not reach tshark", i + 1));
    }
    let _ = following.kill();
    let _ = following.wait();
    let _ = tshark.wait();
    let _ = std::fs::remove_dir_all(&work);
}
