//! `kubectl trawl`: capture a workload's traffic with Trawl from the terminal.
//!
//! Install: `cargo install --path kubectl-trawl` (puts `kubectl-trawl` on the PATH, where kubectl
//! finds it as the `trawl` plugin). Run: `kubectl trawl tap deploy/web`.
mod errors;
mod pcap;
mod session;
mod sessions;
mod tap;
mod target;

use clap::{Parser, Subcommand};
use kube::Client;

/// Capture a workload's traffic with Trawl: `kubectl trawl tap deploy/web`, Ctrl-C to stop.
#[derive(Parser, Debug)]
#[command(name = "kubectl trawl", version, bin_name = "kubectl trawl")]
struct Cli {
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Capture the traffic of a workload's pods (deploy/NAME, sts/NAME, ds/NAME, pod/NAME, or -l
    /// SELECTOR) until Ctrl-C or --duration, then remove the session (unless --keep).
    Tap(tap::Tap),
    /// The capture sessions, with their live counts.
    Sessions(sessions::List),
    /// Stop a capture session and remove it, saying what it captured.
    Stop(sessions::Stop),
    /// A session's packets as pcapng from trawl-api, stored or live (--follow): `kubectl trawl
    /// pcap shop/tap-web-3f440 --follow | wireshark -k -i -`.
    Pcap(pcap::Pcap),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = async {
        let (client, token) = errors::connect(cli.context.as_deref()).await?;
        match cli.command {
            // The API, not the cluster: only the identity's token is needed.
            Command::Pcap(pcap) => pcap.run(token).await,
            command => run(command, client).await,
        }
    }
    .await;
    if let Err(error) = outcome {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command, client: Client) -> anyhow::Result<()> {
    match command {
        Command::Tap(tap) => tap.run(client).await,
        Command::Sessions(list) => list.run(client).await,
        Command::Stop(stop) => stop.run(client).await,
        Command::Pcap(_) => unreachable!("run without the cluster"),
    }
}
