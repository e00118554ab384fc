//! `kubectl trawl open`: the web UI, signed in: through the Kubernetes API server as the
//! kubeconfig identity, or through a port-forward with a token.
//!
//! A token travels in the URL's fragment (`#token=...`), which the browser never sends to a
//! server; the UI keeps it for the tab (sessionStorage) and removes it from the address bar.

use anyhow::Context;
use clap::Args;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a token's characters need no escaping from (RFC 3986's unreserved).
const NON_ALPHANUMERIC_BUT_TOKEN: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[derive(Args, Debug)]
pub struct Open {
    /// trawl-api's address (default: a port-forward to the chart's trawl-api).
    #[arg(long, env = "TRAWL_API_URL")]
    api: Option<String>,
    /// A bearer token to sign in with (default: the kubeconfig identity's token, if it has one).
    #[arg(long, env = "TRAWL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the address instead of starting a browser.
    #[arg(long)]
    no_browser: bool,
}

impl Open {
    pub async fn run(self, client: kube::Client, kubeconfig_token: Option<String>) -> anyhow::Result<()> {
        let api = crate::reach::api(&client, self.api).await?;
        // Through the API server every request is signed in already.
        let token = api.token_to_send(self.token.or(kubeconfig_token));
        let address = signed_in(&api.url, token.as_deref());
        if let Some(through) = &api.through {
            eprintln!("trawl-api through {through} (Ctrl-C stops it)");
        }
        println!("{address}");
        if token.is_none() && !api.signed_in {
            eprintln!(
                "Your kubeconfig identity has no token: sign in on the page with one (kubectl create token ...)."
            );
        }
        if !self.no_browser {
            let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
            if let Err(error) = std::process::Command::new(opener).arg(&address).spawn() {
                eprintln!("cannot start a browser ({opener}: {error}); open the address above");
            }
        }
        if api.through.is_some() {
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        }
        Ok(())
    }
}

/// The UI's address with the token in the fragment.
fn signed_in(url: &str, token: Option<&str>) -> String {
    match token {
        // Tokens are base64url and dots; anything else is percent-encoded.
        Some(token) => format!(
            "{url}/#token={}",
            utf8_percent_encode(token, NON_ALPHANUMERIC_BUT_TOKEN)
        ),
        None => format!("{url}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_travels_in_the_fragment() {
        assert_eq!(
            signed_in("http://127.0.0.1:4000", Some("eyJh.b-c_d")),
            "http://127.0.0.1:4000/#token=eyJh.b-c_d"
        );
        assert_eq!(signed_in("http://x", Some("a b+c")), "http://x/#token=a%20b%2Bc");
        assert_eq!(signed_in("http://x", None), "http://x/");
    }
}
