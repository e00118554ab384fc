use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::str::FromStr;

/// Where the tests find a PostgreSQL superuser; `hack/services.sh` sets this one up.
pub const DEFAULT_ADMIN_URL: &str = "postgres://trawl:trawl@127.0.0.1:5432/postgres";

/// A database created for one test and dropped (with its connections) when this drops.
///
/// On a Citus cluster (`TRAWL_TEST_CITUS_WORKERS=host:port,...` beside a coordinator's
/// `TRAWL_TEST_DATABASE_URL`; `hack/citus.sh env` prints both), the database is created on the
/// coordinator and every worker with the citus extension, and the workers are added to it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
    /// Admin URLs of the Citus workers this database was also created on.
    workers: Vec<String>,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = std::env::var("TRAWL_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!("trawl_test_{}", crate::unique_suffix());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin_url} ({e}); start it with `bash hack/services.sh`")
        });
        // The name is ours (a fixed prefix and hex digits), never user input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = PgConnectOptions::from_str(&admin_url)
            .expect("a valid admin URL")
            .database(&name)
            .to_url_lossy()
            .to_string();
        let workers = citus_workers(&admin_url);
        if !workers.is_empty() {
            join_citus(&admin_url, &name, &workers).await;
        }
        Self {
            name,
            url,
            admin_url,
            workers,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

/// The admin URLs of the Citus workers named by `TRAWL_TEST_CITUS_WORKERS`, with the
/// coordinator's credentials.
fn citus_workers(admin_url: &str) -> Vec<String> {
    let Ok(workers) = std::env::var("TRAWL_TEST_CITUS_WORKERS") else {
        return Vec::new();
    };
    let admin = PgConnectOptions::from_str(admin_url).expect("a valid admin URL");
    workers
        .split(',')
        .filter(|worker| !worker.is_empty())
        .map(|worker| {
            let (host, port) = worker.rsplit_once(':').expect("host:port");
            admin
                .clone()
                .host(host)
                .port(port.parse().expect("a port"))
                .to_url_lossy()
                .to_string()
        })
        .collect()
}

/// Citus does not create a database on its workers: the same database with the extension on
/// each, then the workers added to the coordinator's.
async fn join_citus(admin_url: &str, name: &str, workers: &[String]) {
    let with_database = |url: &str| {
        PgConnectOptions::from_str(url)
            .expect("a valid admin URL")
            .database(name)
    };
    for worker in workers {
        let mut admin = PgConnection::connect(worker).await.expect("reach a Citus worker");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database on a worker");
        let mut database = with_database(worker)
            .connect()
            .await
            .expect("connect to the worker's database");
        sqlx::raw_sql("CREATE EXTENSION citus")
            .execute(&mut database)
            .await
            .expect("citus on the worker");
    }
    let coordinator = PgConnectOptions::from_str(admin_url).expect("a valid admin URL");
    let mut database = with_database(admin_url)
        .connect()
        .await
        .expect("connect to the coordinator's database");
    sqlx::raw_sql("CREATE EXTENSION citus")
        .execute(&mut database)
        .await
        .expect("citus on the coordinator");
    sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
        .bind(coordinator.get_host())
        .bind(i32::from(coordinator.get_port()))
        .execute(&mut database)
        .await
        .expect("name the coordinator");
    for worker in workers {
        let options = PgConnectOptions::from_str(worker).expect("a worker URL");
        sqlx::query("SELECT citus_add_node($1, $2)")
            .bind(options.get_host())
            .bind(i32::from(options.get_port()))
            .execute(&mut database)
            .await
            .expect("add a worker");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let workers = self.workers.clone();
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with a runtime of its own can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                // The coordinator's first: it holds connections to the workers' databases.
                for url in std::iter::once(&admin_url).chain(&workers) {
                    let mut admin = PgConnection::connect(url).await.map_err(std::io::Error::other)?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await
                    .map_err(std::io::Error::other)?;
                }
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// A PostgreSQL server of one test's own (its own data folder and port), for tests that stop and
/// restart the database without disturbing the shared one. Stopped and removed on drop.
pub struct PrivatePostgres {
    pub port: u16,
    pub url: String,
    listen: String,
    dir: std::path::PathBuf,
    running: bool,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1", crate::process::free_port())
    }

    /// A server listening on `address:port` (an address of a test veth, for clients in the
    /// test's namespace: any client of a subnet the server is on is trusted).
    pub fn start_on(address: &str, port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("trawl-postgres-{}", crate::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        // PostgreSQL refuses to run as root; the Debian package's `postgres` user runs it.
        let chown = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success());
        let server = Self {
            url: format!("postgres://trawl@{address}:{port}/postgres"),
            port,
            listen: address.to_owned(),
            dir,
            running: false,
        };
        let initdb = server
            .as_postgres(&format!("{}/initdb", pg_bin()))
            .arg("-D")
            .arg(server.dir.join("data"))
            .args(["-U", "trawl", "--auth=trust"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(initdb.success(), "initdb failed");
        let hba = server.dir.join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("host all all samenet trust\n");
        std::fs::write(&hba, rules).unwrap();
        let mut server = server;
        server.resume();
        server
    }

    /// Stops the server (fast shutdown: connections drop, as in an outage).
    pub fn stop(&mut self) {
        let status = self
            .as_postgres(&format!("{}/pg_ctl", pg_bin()))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "-s", "stop"])
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl stop failed");
        self.running = false;
    }

    /// Starts the stopped server again on the same data.
    pub fn resume(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses={} -k {} -c fsync=off",
            self.port,
            self.listen,
            self.dir.display()
        );
        let status = self
            .as_postgres(&format!("{}/pg_ctl", pg_bin()))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-s", "-o", &options, "start"])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pg_ctl start failed; see {}",
            self.dir.join("server.log").display()
        );
        self.running = true;
    }

    fn as_postgres(&self, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .as_postgres(&format!("{}/pg_ctl", pg_bin()))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "-s", "stop"])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's binaries.
fn pg_bin() -> String {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt install postgresql)")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort();
    format!(
        "/usr/lib/postgresql/{}/bin",
        versions.last().expect("a PostgreSQL version")
    )
}
