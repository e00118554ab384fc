//! `kubectl trawl tap`: a CaptureSession for exactly a workload's pods, Ready with progress on the
//! way, removed on Ctrl-C with what it captured said.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use crds::{CaptureSession, CaptureSessionSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::session::{self, TAPPED_BY};
use crate::{errors, target};

#[derive(Args, Debug)]
pub struct Tap {
    /// What to capture: deploy/NAME, sts/NAME, ds/NAME, rs/NAME or pod/NAME.
    workload: Option<String>,
    /// Capture the pods with these labels instead (`app=web,tier!=db`).
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// With -l: the pods of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// A capture filter in tcpdump's syntax (`tcp port 80`).
    #[arg(long)]
    filter: Option<String>,
    /// Stop after this long (a Go duration: 90s, 10m, 1h).
    #[arg(long)]
    duration: Option<String>,
    /// Keep payload, not only headers (your role must allow it to read it back).
    #[arg(long)]
    payload: bool,
    /// Capture only on this node.
    #[arg(long)]
    node: Option<String>,
    /// Leave the session (and its data) in place when this command ends.
    #[arg(long)]
    keep: bool,
    /// How long to wait for the capture to be Ready.
    #[arg(long, default_value = "2m", value_parser = humantime_duration)]
    timeout: Duration,
    /// Write the capture live as pcapng, from its first packet, to a file or - (standard
    /// output): `kubectl trawl tap deploy/web -w - | wireshark -k -i -`.
    #[arg(short = 'w', long = "write")]
    write: Option<String>,
    /// Same as `-w -`.
    #[arg(long, conflicts_with = "write")]
    wireshark: bool,
    /// trawl-api's address, for -w (default: a port-forward to the chart's trawl-api).
    #[arg(long, env = "TRAWL_API_URL")]
    api: Option<String>,
    /// A bearer token for the API, for -w (default: the kubeconfig identity's token).
    #[arg(long, env = "TRAWL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s or 2m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!("{text:?} is not a duration such as 90s or 2m")),
    }
}

/// A session name from what is tapped: `tap-web-4f2a1`, within what child names allow.
fn session_name(short: &str) -> String {
    let cleaned: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('-');
    let cleaned: String = cleaned.chars().take(24).collect();
    let suffix: u32 = rand::random::<u32>() & 0xfffff;
    format!("tap-{}-{suffix:05x}", cleaned.trim_end_matches('-'))
}

impl Tap {
    pub async fn run(mut self, client: Client, kubeconfig_token: Option<String>) -> anyhow::Result<()> {
        if self.wireshark {
            self.write = Some("-".into());
        }
        if self.write.is_some() && !self.payload {
            eprintln!(
                "Note: without --payload the capture keeps headers only (no HTTP requests or TLS hellos to show)."
            );
        }
        // Found before anything is created: a missing API is said before a session exists.
        let api = match &self.write {
            Some(_) => Some(crate::reach::api(&client, self.api.take()).await?),
            None => None,
        };
        let token = self.token.take().or(kubeconfig_token);
        errors::ensure_installed(&client).await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let resolved = target::resolve(
            &client,
            &namespace,
            self.workload.as_deref(),
            self.selector.as_deref(),
            self.all_namespaces,
        )
        .await?;
        let mut spec: CaptureSessionSpec = serde_json::from_value(serde_json::json!({}))?;
        spec.target = Some(resolved.target.clone());
        spec.filter = self.filter.clone();
        spec.duration = self.duration.clone();
        spec.store_payload = self.payload;
        if let Some(node) = &self.node {
            spec.node_selector = BTreeMap::from([("kubernetes.io/hostname".to_owned(), node.clone())]);
        }
        let name = session_name(&resolved.short_name);
        let session = CaptureSession {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([(TAPPED_BY.to_owned(), "kubectl-trawl".to_owned())])),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        };
        let sessions: Api<CaptureSession> = Api::namespaced(client.clone(), &namespace);
        sessions
            .create(&PostParams::default(), &session)
            .await
            .map_err(|error| errors::sessions(error, &namespace))?;
        let nodes = target::nodes(&resolved.pods);
        eprintln!(
            "Tapping {}: {} pod{} on {} node{} (session {namespace}/{name})",
            resolved.what,
            resolved.pods.len(),
            plural(resolved.pods.len()),
            nodes.len(),
            plural(nodes.len()),
        );
        // Started once the session is Ready: the API knows a session only once the operator has
        // recorded it, and from its first packet on (`after=0`) nothing before is missed.
        let mut live = api.as_ref().zip(self.write.clone()).map(|(reached, output)| {
            if let Some(through) = &reached.through {
                eprintln!("trawl-api through {through}");
            }
            let export = crate::pcap::Export {
                namespace: namespace.clone(),
                name: name.clone(),
                q: None,
                since: None,
                follow: true,
                from_start: true,
                output,
            };
            Live::Waiting(export, reached.url.clone(), reached.token_to_send(token.clone()))
        });
        let outcome = self.watch(&sessions, &name, &mut live).await;
        if self.keep {
            eprintln!("Kept: kubectl trawl stop -n {namespace} {name} removes it and its data.");
        } else {
            let counts = session::remove(&sessions, &name).await?;
            eprintln!("Removed {namespace}/{name}: {}", session::describe(counts.as_ref()));
        }
        if let Some(Live::Streaming(stream)) = live {
            stream.abort();
        }
        outcome
    }

    /// Progress until Ready, then live counts until Ctrl-C or the capture completes.
    async fn watch(&self, api: &Api<CaptureSession>, name: &str, live: &mut Option<Live>) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut said = String::new();
        let mut ready = false;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            let session = api
                .get(name)
                .await
                .map_err(|error| errors::sessions(error, "this namespace"))?;
            let status = session.status.unwrap_or_default();
            let condition = |kind: &str| status.conditions.iter().find(|c| c.type_ == kind).cloned();
            if let Some(stalled) = condition("Stalled").filter(|c| c.status == "True") {
                bail!("the capture cannot start: {} ({})", stalled.message, stalled.reason);
            }
            let phase = status
                .phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "Pending".into());
            if phase == "Completed" {
                eprintln!("Capture completed: {}", session::describe(status.packets.as_ref()));
                return Ok(());
            }
            let now_ready = condition("Ready").is_some_and(|c| c.status == "True");
            let line = if now_ready {
                format!("Capturing: {}", session::describe(status.packets.as_ref()))
            } else {
                let why = condition("Ready").map(|c| c.message).unwrap_or_default();
                format!("{phase}: {why}")
            };
            if now_ready && !ready {
                if let Some(waiting) = live.take() {
                    *live = Some(waiting.start());
                }
                // Standard error: standard output may be carrying the pcapng (-w -).
                eprintln!(
                    "Capturing (Ctrl-C stops{}).",
                    if self.keep { "" } else { " and removes the session" }
                );
                eprintln!("  kubectl get cap -n {} {name} -w", api_namespace(api));
                ready = true;
            } else if line != said {
                eprintln!("{line}");
            }
            said = line;
            if !ready && started.elapsed() > self.timeout {
                bail!(
                    "the capture was not Ready after {:?}: {said} (kubectl describe cap {name} tells more)",
                    self.timeout
                );
            }
            tokio::select! {
                _ = &mut interrupted => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The live pcapng of `-w`: waiting for the session to be Ready, then streaming.
enum Live {
    Waiting(crate::pcap::Export, String, Option<String>),
    Streaming(tokio::task::JoinHandle<()>),
}

impl Live {
    fn start(self) -> Self {
        match self {
            Self::Waiting(export, url, token) => Self::Streaming(tokio::spawn(async move {
                // Until the session completes or is removed (the API then ends the stream).
                if let Err(error) = export.run(&url, token).await {
                    eprintln!("error: the live pcapng stopped: {error:#}");
                }
            })),
            streaming => streaming,
        }
    }
}

fn api_namespace(api: &Api<CaptureSession>) -> String {
    api.namespace().unwrap_or_default().to_owned()
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_short_lowercase_and_unique() {
        let name = session_name("Web_Frontend.v2-with-a-very-long-name-indeed");
        assert!(name.starts_with("tap-web-frontend-v2-with-a-"), "{name}");
        assert!(name.len() <= 4 + 24 + 6);
        assert_ne!(session_name("web"), session_name("web"));
    }

    #[test]
    fn durations_read_as_kubectl_users_write_them() {
        assert_eq!(humantime_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(humantime_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(humantime_duration("soon").is_err());
    }
}
