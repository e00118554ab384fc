//! `kubectl trawl`: capture a workload's traffic with Trawl from the terminal.
//!
//! Install: `cargo install --path kubectl-trawl` (puts `kubectl-trawl` on the PATH, where kubectl
//! finds it as the `trawl` plugin). Run: `kubectl trawl tap deploy/web`.
mod errors;
mod extcap;
mod open;
mod pcap;
mod reach;
mod session;
mod sessions;
mod tap;
mod target;

use clap::{Parser, Subcommand};

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
    /// The web UI in your browser, signed in as your kubeconfig identity (or --token), through a
    /// port-forward to trawl-api until Ctrl-C.
    Open(open::Open),
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if extcap::called_by_wireshark(&args) {
        let outcome = match extcap::Extcap::try_parse_from(&args) {
            Ok(extcap) => extcap.run(None).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = outcome {
            eprintln!("kubectl-trawl: {error:#}");
            std::process::exit(1);
        }
        return;
    }
    let cli = Cli::parse();
    let outcome = async {
        let (client, token) = errors::connect(cli.context.as_deref()).await?;
        match cli.command {
            Command::Tap(tap) => tap.run(client, token).await,
            Command::Sessions(list) => list.run(client).await,
            Command::Stop(stop) => stop.run(client).await,
            Command::Pcap(pcap) => pcap.run(client, token).await,
            Command::Open(open) => open.run(client, token).await,
        }
    }
    .await;
    if let Err(error) = outcome {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
