//! Wireshark's own capture dialog: the plugin as an extcap program (Wireshark's protocol for
//! external capture sources, which tshark speaks too). Wireshark runs it with `--extcap-*`
//! arguments: it lists one interface per capture session the kubeconfig identity may see, offers
//! a filter and a start time, and on `--capture --fifo PATH` writes the session's packets live as
//! pcapng into the FIFO Wireshark reads, through the same export as `kubectl trawl pcap --follow`.
//!
//! Install: link or copy `kubectl-trawl` into Wireshark's extcap folder (Help > About Wireshark >
//! Folders > "Extcap path", e.g. `/usr/lib/x86_64-linux-gnu/wireshark/extcap` on Debian), then
//! restart Wireshark. KUBECONFIG, TRAWL_API_URL and TRAWL_TOKEN are read from the environment
//! Wireshark was started in.

use anyhow::anyhow;
use clap::Parser;
use crds::CaptureSession;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::pcap::Export;

/// The arguments Wireshark passes (documented in its extcap manual page), and ours from
/// `--extcap-config`.
#[derive(Parser, Debug, Default)]
#[command(
    name = "kubectl-trawl (extcap)",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Extcap {
    #[arg(long)]
    extcap_interfaces: bool,
    #[arg(long)]
    extcap_version: Option<String>,
    #[arg(long)]
    extcap_interface: Option<String>,
    #[arg(long)]
    extcap_dlts: bool,
    #[arg(long)]
    extcap_config: bool,
    #[arg(long)]
    capture: bool,
    #[arg(long)]
    fifo: Option<String>,
    /// A capture filter typed in Wireshark's dialog (BPF); Trawl's filter is `--filter`.
    #[arg(long)]
    extcap_capture_filter: Option<String>,
    #[arg(long)]
    extcap_control_in: Option<String>,
    #[arg(long)]
    extcap_control_out: Option<String>,
    #[arg(long)]
    debug: bool,
    #[arg(long)]
    debug_file: Option<String>,
    #[arg(long)]
    extcap_reload_option: Option<String>,
    /// Trawl's filter (the API's `q`).
    #[arg(long)]
    filter: Option<String>,
    /// Stored packets from this time on, then live (RFC 3339, or 10m); empty: live from now.
    #[arg(long)]
    since: Option<String>,
}

/// Whether Wireshark (or tshark) is the caller: it always passes one of these.
pub fn called_by_wireshark(args: &[String]) -> bool {
    args.iter()
        .skip(1)
        .any(|arg| arg.starts_with("--extcap-") || arg == "--capture")
}

/// An interface per session: `trawl.NAMESPACE.NAME` (namespaces hold no dots, names may).
fn interface(namespace: &str, name: &str) -> String {
    format!("trawl.{namespace}.{name}")
}

fn session_of(interface: &str) -> Option<(&str, &str)> {
    interface.strip_prefix("trawl.")?.split_once('.')
}

/// `--extcap-interfaces`'s answer for these sessions (namespace, name, phase).
fn interfaces(sessions: &[(String, String, String)]) -> String {
    let mut out = format!(
        "extcap {{version={}}}{{help=https://github.com/trawl-dev/trawl#kubectl-trawl}}\n",
        env!("CARGO_PKG_VERSION")
    );
    for (namespace, name, phase) in sessions {
        out.push_str(&format!(
            "interface {{value={}}}{{display=Trawl: {namespace}/{name} ({phase})}}\n",
            interface(namespace, name)
        ));
    }
    out
}

const DLTS: &str = "dlt {number=1}{name=EN10MB}{display=Ethernet}\n";

const CONFIG: &str = "arg {number=0}{call=--filter}{display=Filter}{type=string}\
{tooltip=Trawl's filter language, as the API's q: tcp and port 80, dns, src pod shop/web-1}\n\
arg {number=1}{call=--since}{display=Since}{type=string}\
{tooltip=Stored packets from this time on, then live (RFC 3339, or a duration ago: 10m). Empty: live from now}\n";

impl Extcap {
    pub async fn run(self, context: Option<&str>) -> anyhow::Result<()> {
        if self.extcap_interfaces {
            let sessions = match visible_sessions(context).await {
                Ok(sessions) => sessions,
                Err(error) => {
                    // Wireshark lists what it gets; say why there is nothing on its log.
                    eprintln!("kubectl-trawl: no sessions to list: {error:#}");
                    Vec::new()
                }
            };
            print!("{}", interfaces(&sessions));
            return Ok(());
        }
        if self.extcap_dlts {
            print!("{DLTS}");
            return Ok(());
        }
        if self.extcap_config {
            print!("{CONFIG}");
            return Ok(());
        }
        if !self.capture {
            return Err(anyhow!(
                "called as an extcap without --extcap-interfaces, --extcap-dlts, --extcap-config or --capture"
            ));
        }
        let interface_name = self.extcap_interface.as_deref().unwrap_or_default();
        let (namespace, name) =
            session_of(interface_name).ok_or_else(|| anyhow!("{interface_name:?} is not a Trawl interface"))?;
        let fifo = self.fifo.ok_or_else(|| anyhow!("--capture needs --fifo"))?;
        if self
            .extcap_capture_filter
            .as_deref()
            .is_some_and(|f| !f.trim().is_empty())
        {
            eprintln!(
                "kubectl-trawl: the capture filter is not applied: use the interface's Filter option (Trawl's language)"
            );
        }
        let (client, kubeconfig_token) = crate::errors::connect(context).await?;
        let api = crate::reach::api(&client, std::env::var("TRAWL_API_URL").ok()).await?;
        let since = self.since.filter(|since| !since.trim().is_empty());
        Export {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            q: self.filter.filter(|filter| !filter.trim().is_empty()),
            from_start: since.is_some(),
            since,
            follow: true,
            output: fifo,
        }
        .run(
            &api.url,
            api.token_to_send(std::env::var("TRAWL_TOKEN").ok().or(kubeconfig_token)),
        )
        .await
    }
}

/// The sessions this identity may list, in every namespace it may (all, or its context's).
async fn visible_sessions(context: Option<&str>) -> anyhow::Result<Vec<(String, String, String)>> {
    let (client, _) = crate::errors::connect(context).await?;
    let all: Api<CaptureSession> = Api::all(client.clone());
    let sessions = match all.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(_) => {
            let own: Api<CaptureSession> = Api::default_namespaced(client);
            own.list(&ListParams::default()).await?.items
        }
    };
    Ok(sessions
        .iter()
        .map(|session| {
            let phase = session
                .status
                .as_ref()
                .and_then(|status| status.phase.as_ref())
                .map_or_else(|| "Pending".to_owned(), |phase| format!("{phase:?}"));
            (session.namespace().unwrap_or_default(), session.name_any(), phase)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireshark_is_recognised_by_its_arguments() {
        let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(called_by_wireshark(&args(&[
            "kubectl-trawl",
            "--extcap-interfaces",
            "--extcap-version=4.0"
        ])));
        assert!(called_by_wireshark(&args(&[
            "kubectl-trawl",
            "--capture",
            "--fifo",
            "/tmp/f"
        ])));
        assert!(!called_by_wireshark(&args(&["kubectl-trawl", "tap", "deploy/web"])));
        let parsed = Extcap::try_parse_from([
            "kubectl-trawl",
            "--capture",
            "--extcap-interface",
            "trawl.shop.web.v2",
            "--fifo",
            "/tmp/fifo",
            "--filter",
            "tcp",
            "--extcap-control-in",
            "/tmp/in",
        ])
        .unwrap();
        assert_eq!(
            session_of(parsed.extcap_interface.as_deref().unwrap()),
            Some(("shop", "web.v2"))
        );
    }

    #[test]
    fn the_answers_are_wiresharks_format() {
        let listed = interfaces(&[("shop".into(), "web".into(), "Capturing".into())]);
        let lines: Vec<&str> = listed.lines().collect();
        assert!(lines[0].starts_with("extcap {version="));
        assert_eq!(
            lines[1],
            "interface {value=trawl.shop.web}{display=Trawl: shop/web (Capturing)}"
        );
        assert!(CONFIG.lines().all(|line| line.starts_with("arg {number=")));
        assert_eq!(CONFIG.lines().count(), 2);
    }
}
