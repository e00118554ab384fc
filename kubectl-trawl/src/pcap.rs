//! `kubectl trawl pcap NS/NAME`: a session's packets from trawl-api as pcapng, stored or live
//! (`--follow`, for `-o - | wireshark -k -i -`).

use std::io::Write;

use anyhow::{Context, anyhow, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct Pcap {
    /// The session, as NAMESPACE/NAME.
    session: String,
    /// A filter in the API's `q` language (`dns.query ~ "example"`, `tcp.port == 443`).
    #[arg(short)]
    q: Option<String>,
    /// Only packets from this time on (RFC 3339, or a duration ago such as 10m).
    #[arg(long)]
    since: Option<String>,
    /// Where to write: a file, or - for standard output.
    #[arg(short, long, default_value = "-")]
    output: String,
    /// Live: the packets stored from now on, as they are stored, until the session completes.
    #[arg(short, long)]
    follow: bool,
    /// trawl-api's address (default: through the Kubernetes API server as your kubeconfig
    /// identity, or else a port-forward to the chart's trawl-api).
    #[arg(long, env = "TRAWL_API_URL")]
    api: Option<String>,
    /// A bearer token for the API, where it is not reached through the API server (default: the
    /// kubeconfig identity's token, if it has one).
    #[arg(long, env = "TRAWL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// What to export, and where to.
pub struct Export {
    pub namespace: String,
    pub name: String,
    pub q: Option<String>,
    pub since: Option<String>,
    /// Live from here on; with `from_start`, everything the session stored, then live.
    pub follow: bool,
    pub from_start: bool,
    /// A file, or - for standard output.
    pub output: String,
}

impl Pcap {
    pub async fn run(self, client: kube::Client, kubeconfig_token: Option<String>) -> anyhow::Result<()> {
        let (namespace, name) = self
            .session
            .split_once('/')
            .map(|(namespace, name)| (namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| anyhow!("{:?}: name the session as NAMESPACE/NAME", self.session))?;
        let api = crate::reach::api(&client, self.api).await?;
        if let Some(through) = &api.through {
            eprintln!("trawl-api through {through}");
        }
        let export = Export {
            namespace,
            name,
            q: self.q,
            since: self.since,
            follow: self.follow,
            from_start: false,
            output: self.output,
        };
        let token = api.token_to_send(self.token.or(kubeconfig_token));
        export.run(&api.url, token).await
    }
}

impl Export {
    /// Streams the session's pcapng from trawl-api at `api` to the output until the export ends
    /// (a live one: when the session completes, or the reader goes away).
    pub async fn run(self, api: &str, token: Option<String>) -> anyhow::Result<()> {
        let Self {
            namespace,
            name,
            q,
            since,
            follow,
            from_start,
            output,
        } = self;
        let url = format!("{api}/api/v1/sessions/{namespace}/{name}/pcap");
        let mut request = ureq::get(&url)
            .query("format", "pcapng")
            .config()
            .http_status_as_error(false)
            .timeout_global(None)
            .build();
        if follow {
            request = request.query("follow", "true");
            if from_start {
                request = request.query("after", "0");
            }
        }
        if let Some(q) = &q {
            request = request.query("q", q);
        }
        if let Some(since) = &since {
            request = request.query("since", since);
        }
        if let Some(token) = &token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        // ureq blocks: the copy runs on a thread of its own, as long as the export lasts.
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut response = request
                .call()
                .map_err(|error| anyhow!("cannot reach trawl-api at {url}: {error}"))?;
            let status = response.status().as_u16();
            if status != 200 {
                let body = response.body_mut().read_to_string().unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or(body);
                match status {
                    401 => bail!("trawl-api wants a token: pass --token (or TRAWL_TOKEN): {message}"),
                    403 => bail!("you may not export packets of {namespace}/{name}: {message}"),
                    _ => bail!("trawl-api answered {status}: {message}"),
                }
            }
            if follow && !from_start {
                // The API has fixed where the live export starts: what is stored from here on.
                eprintln!("Following {namespace}/{name}: packets as they are stored (Ctrl-C stops)");
            }
            let mut reader = response.into_body().into_reader();
            let written = if output == "-" {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                copy_flushing(&mut reader, &mut out)
            } else {
                let mut file = std::fs::File::create(&output).with_context(|| format!("cannot write {output}"))?;
                copy_flushing(&mut reader, &mut file)
            };
            written.context("the export ended midway")?;
            Ok(())
        })
        .await?
    }
}

/// Copies as it arrives, flushing each read: a live reader (Wireshark) wants packets now, not
/// when a buffer fills.
fn copy_flushing(reader: &mut impl std::io::Read, out: &mut impl Write) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        match out.write_all(&buffer[..read]).and_then(|()| out.flush()) {
            Ok(()) => total += read as u64,
            // The reader went away (wireshark closed): done.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(total),
            Err(error) => return Err(error),
        }
    }
}
