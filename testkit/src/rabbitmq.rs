use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Where the tests find RabbitMQ; `hack/services.sh` sets this one up.
pub const DEFAULT_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672";
pub const DEFAULT_MANAGEMENT: &str = "http://127.0.0.1:15672";

/// A vhost created for one test (so queues and exchanges never collide) and deleted when this drops.
pub struct TestVhost {
    pub name: String,
    /// AMQP URL of the vhost.
    pub amqp_url: String,
    /// Base URL of the management API.
    pub management_url: String,
    authorization: String,
}

impl TestVhost {
    pub fn create() -> Self {
        let amqp = std::env::var("TRAWL_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP.to_owned());
        let management_url =
            std::env::var("TRAWL_TEST_RABBITMQ_MANAGEMENT_URL").unwrap_or_else(|_| DEFAULT_MANAGEMENT.to_owned());
        let credentials = amqp
            .strip_prefix("amqp://")
            .and_then(|rest| rest.split_once('@'))
            .map(|(userinfo, _)| userinfo.to_owned())
            .expect("TRAWL_TEST_AMQP_URL must look like amqp://user:password@host:port");
        let user = credentials.split(':').next().unwrap_or_default().to_owned();
        let authorization = format!("Basic {}", STANDARD.encode(&credentials));
        let name = format!("trawl-test-{}", crate::unique_suffix());
        let vhost = Self {
            amqp_url: format!("{amqp}/{name}"),
            management_url,
            authorization,
            name,
        };
        vhost
            .request("PUT", &format!("/api/vhosts/{}", vhost.name), None)
            .unwrap_or_else(|e| {
                panic!("RabbitMQ's management API is not reachable ({e}); start it with `bash hack/services.sh`")
            });
        let all = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        vhost
            .request("PUT", &format!("/api/permissions/{}/{user}", vhost.name), Some(all))
            .expect("grant the test user the vhost");
        vhost
    }

    /// A call to the management API, e.g. `get("/api/queues/{vhost}/{queue}")`.
    pub fn get(&self, path: &str) -> Result<serde_json::Value, ureq::Error> {
        let mut response = ureq::get(format!("{}{path}", self.management_url))
            .header("Authorization", &self.authorization)
            .call()?;
        response.body_mut().read_json()
    }

    /// A DELETE on the management API, e.g. to close a client's connection.
    pub fn delete(&self, path: &str) -> Result<(), ureq::Error> {
        self.request("DELETE", path, None)
    }

    fn request(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<(), ureq::Error> {
        let url = format!("{}{path}", self.management_url);
        match method {
            "PUT" => {
                ureq::put(url)
                    .header("Authorization", &self.authorization)
                    .send_json(body.unwrap_or_else(|| serde_json::json!({})))?;
            }
            "DELETE" => {
                ureq::delete(url).header("Authorization", &self.authorization).call()?;
            }
            _ => unreachable!("only PUT and DELETE are used"),
        }
        Ok(())
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let deleted = self.request("DELETE", &format!("/api/vhosts/{}", self.name), None);
        if let Err(e) = deleted
            && !std::thread::panicking()
        {
            panic!("could not delete test vhost {}: {e}", self.name);
        }
    }
}
