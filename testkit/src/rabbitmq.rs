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

/// A RabbitMQ node of one test's own (its own node name, ports and data folder), for tests that
/// stop and restart the broker without disturbing the shared one. Durable queues and persistent
/// messages survive `restart`, as on a real broker. The node is stopped and its folder removed on drop.
pub struct PrivateBroker {
    pub node: String,
    pub port: u16,
    dir: std::path::PathBuf,
    server: Option<std::process::Child>,
}

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl PrivateBroker {
    pub fn start() -> Self {
        Self::start_with_cookie(None)
    }

    /// `nodes` brokers joined into one RabbitMQ cluster (the first one's), as a cluster of
    /// machines would be: they share an Erlang cookie and each knows the others by node name.
    pub fn cluster(nodes: usize) -> Vec<Self> {
        let cookie = format!("TRAWLTEST{}", crate::unique_suffix().replace('-', "").to_uppercase());
        let brokers: Vec<Self> = (0..nodes).map(|_| Self::start_with_cookie(Some(&cookie))).collect();
        for broker in &brokers[1..] {
            for step in [
                vec!["stop_app"],
                vec!["join_cluster", brokers[0].node.as_str()],
                vec!["start_app"],
            ] {
                let status = broker
                    .ctl()
                    .args(&step)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("run rabbitmqctl");
                assert!(status.success(), "rabbitmqctl {step:?} on {}", broker.node);
            }
        }
        brokers
    }

    /// The cluster member that leads the quorum queue `queue` of the default vhost.
    pub fn quorum_leader(&self, queue: &str) -> Option<String> {
        let output = self
            .ctl()
            .args(["list_queues", "name", "leader", "--no-table-headers"])
            .output()
            .expect("run rabbitmqctl");
        String::from_utf8_lossy(&output.stdout).lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(queue)).then(|| fields.next().map(str::to_owned))?
        })
    }

    fn start_with_cookie(cookie: Option<&str>) -> Self {
        let suffix = crate::unique_suffix();
        let dir = std::env::temp_dir().join(format!("trawl-rabbitmq-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(cookie) = cookie {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(".erlang.cookie");
            std::fs::write(&path, cookie).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        // The guest user may connect from 127.0.0.1 only by default, which is all we use; no config needed beyond this.
        std::fs::write(dir.join("rabbitmq.conf"), "log.console = false\n").unwrap();
        let mut broker = Self {
            node: format!("trawl-test-{suffix}@localhost"),
            port: crate::process::free_port(),
            dir,
            server: None,
        };
        broker.boot();
        broker
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the node (connections drop, as in a broker restart) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Starts the stopped node again on the same data.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "the broker is running");
        self.boot();
    }

    /// Stops the node gracefully; clients see their connections close.
    pub fn stop(&mut self) {
        assert!(self.server.is_some(), "the broker is not running");
        let status = self
            .ctl()
            .args(["stop", &self.pid_file()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run rabbitmqctl");
        assert!(status.success(), "rabbitmqctl stop {}", self.node);
        if let Some(mut server) = self.server.take() {
            let _ = server.wait();
        }
    }

    fn boot(&mut self) {
        let mut command = std::process::Command::new(format!("{RABBITMQ_BIN}/rabbitmq-server"));
        self.env(&mut command);
        command
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", crate::process::free_port().to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.server = Some(command.spawn().expect("start rabbitmq-server (apt: rabbitmq-server)"));
        let status = self
            .ctl()
            .args(["wait", &self.pid_file(), "--timeout", "120"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run rabbitmqctl");
        assert!(
            status.success(),
            "RabbitMQ node {} did not start; logs in {}",
            self.node,
            self.dir.display()
        );
    }

    fn pid_file(&self) -> String {
        self.dir.join("pid").display().to_string()
    }

    fn env(&self, command: &mut std::process::Command) {
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            // The Erlang cookie is created in HOME; the CLI below must find the same one.
            .env("HOME", &self.dir);
    }

    fn ctl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(format!("{RABBITMQ_BIN}/rabbitmqctl"));
        self.env(&mut command);
        command.args(["-q", "-n", &self.node]);
        command
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self
                .ctl()
                .args(["stop", &self.pid_file()])
                .stdout(std::process::Stdio::null())
                .status();
            if let Some(mut server) = self.server.take() {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
