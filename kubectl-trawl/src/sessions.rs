//! `kubectl trawl sessions` and `kubectl trawl stop`.

use clap::Args;
use crds::CaptureSession;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::errors;
use crate::session::{TAPPED_BY, describe, remove};

#[derive(Args, Debug)]
pub struct List {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

impl List {
    pub async fn run(self, client: Client) -> anyhow::Result<()> {
        errors::ensure_installed(&client).await?;
        let namespace = self.namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        let api: Api<CaptureSession> = if self.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &namespace)
        };
        let sessions = api
            .list(&ListParams::default())
            .await
            .map_err(|error| errors::sessions(error, &namespace))?;
        if sessions.items.is_empty() {
            eprintln!(
                "No capture sessions in {}.",
                if self.all_namespaces {
                    "any namespace".to_owned()
                } else {
                    format!("namespace {namespace}")
                }
            );
            return Ok(());
        }
        let rows: Vec<[String; 8]> = sessions.items.iter().map(row).collect();
        let header = [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "READY",
            "CAPTURED",
            "STORED",
            "DROPPED",
            "BY",
        ]
        .map(str::to_owned);
        print!("{}", table(&header, &rows));
        Ok(())
    }
}

fn row(session: &CaptureSession) -> [String; 8] {
    let status = session.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or_else(|| "Unknown".to_owned(), |c| c.status.clone());
    let counts = status.packets.unwrap_or_default();
    [
        session.namespace().unwrap_or_default(),
        session.name_any(),
        status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Pending".into()),
        ready,
        counts.captured.to_string(),
        counts.stored.to_string(),
        counts.dropped.to_string(),
        if session.labels().contains_key(TAPPED_BY) {
            "tap".into()
        } else {
            "manifest".into()
        },
    ]
}

/// Columns padded to their widest cell, as kubectl prints tables.
fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.each_ref().map(|h| h.len());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[derive(Args, Debug)]
pub struct Stop {
    /// The session to stop and remove.
    name: String,
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
}

impl Stop {
    pub async fn run(self, client: Client) -> anyhow::Result<()> {
        errors::ensure_installed(&client).await?;
        let namespace = self.namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        let api: Api<CaptureSession> = Api::namespaced(client, &namespace);
        let counts = remove(&api, &self.name).await?;
        println!("Removed {namespace}/{}: {}", self.name, describe(counts.as_ref()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_like_kubectls() {
        let header = ["NAME", "PHASE"].map(str::to_owned);
        let rows = [["web".to_owned(), "Capturing".to_owned()]];
        assert_eq!(table(&header, &rows), "NAME   PHASE\nweb    Capturing\n");
    }
}
