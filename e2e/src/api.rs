//! A `trawl-api` of the test's own over the pipeline's database (open: no tokens file), and
//! reading its pages.

use serde_json::Value;
use testkit::process::{Service, free_port, workspace_binary};

pub struct TrawlApi {
    pub port: u16,
    pub session: String,
    _process: Service,
}

impl TrawlApi {
    /// Starts it and waits until it is ready.
    pub async fn start(database_url: &str, session: &str) -> Self {
        let port = free_port();
        let mut command = std::process::Command::new(workspace_binary("api", "trawl-api"));
        command.args(["--database-url", database_url, "--listen", &format!("127.0.0.1:{port}")]);
        let api = Self {
            port,
            session: session.to_owned(),
            _process: Service::start("trawl-api", command),
        };
        let ready = format!("http://127.0.0.1:{port}/readyz");
        testkit::wait_until("the API to be ready", crate::pipeline::DEADLINE, || async {
            ureq::get(&ready).call().ok().map(|_| ())
        })
        .await;
        api
    }

    /// GET `path` with the session and `query`: the status and the JSON body (null if none).
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut request = ureq::get(&format!("http://127.0.0.1:{}{path}", self.port)).query("session", &self.session);
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        match request.call() {
            Ok(mut response) => (response.status().as_u16(), response.body_mut().read_json().unwrap()),
            Err(ureq::Error::StatusCode(status)) => (status, Value::Null),
            Err(error) => panic!("GET {path}: {error}"),
        }
    }

    /// Every item of a paged list, through all its pages.
    pub fn all(&self, path: &str, query: &[(&str, &str)]) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_query = vec![("limit", "1000")];
            page_query.extend_from_slice(query);
            if let Some(cursor) = &cursor {
                page_query.push(("cursor", cursor));
            }
            let (status, page) = self.get(path, &page_query);
            assert_eq!(status, 200, "GET {path} {query:?}: {page}");
            items.extend(page["items"].as_array().into_iter().flatten().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    pub fn packets(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let (status, page) = self.get("/api/v1/packets", &[&[("limit", "1000")], query].concat());
        assert_eq!(status, 200, "{query:?}");
        page["items"].as_array().unwrap().clone()
    }
}
