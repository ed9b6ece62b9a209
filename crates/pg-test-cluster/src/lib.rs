//! A real PostgreSQL for tests and benchmarks.
//!
//! With `DATABROKER_TEST_POSTGRES_URL` set (a libpq URL to a server where the user may create
//! databases), tests use that server. Otherwise a throwaway cluster is made with the installed
//! Debian PostgreSQL (`/usr/lib/postgresql/<version>/bin`): `initdb` into a temporary
//! directory, then `postgres` on a free loopback port. As root, both run as the `postgres` user
//! (PostgreSQL refuses to run as root).
//!
//! A small shell supervisor owns the server: it reads commands (`stop`, `start`) from a pipe
//! whose other end this process holds, and when that pipe closes — this process ended, however it
//! ended — it stops the server and deletes the directory. No test leaves a server behind.
//!
//! Every test gets a database of its own ([`TestPostgres::database`]).
//!
//! [`TestPostgres::start_cluster_tls`] starts a cluster with `ssl = on`, the certificate, key,
//! client CA and `pg_hba.conf` lines the test gives ([`ServerTls`]).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The environment variable naming another server to use.
pub const URL_VARIABLE: &str = "DATABROKER_TEST_POSTGRES_URL";

/// A PostgreSQL server for tests.
#[derive(Debug)]
pub struct TestPostgres {
    /// `postgresql://user@host:port` without a database.
    base_url: String,
    /// The database the base URL names for administration.
    admin_url: String,
    bin: Option<PathBuf>,
    supervisor: Option<Mutex<Supervisor>>,
}

#[derive(Debug)]
struct Supervisor {
    // Held for its pipe: dropping it (at exit) stops the server.
    _child: Child,
    commands: ChildStdin,
    port: u16,
}

static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl TestPostgres {
    /// One server shared by the tests of a test binary.
    pub fn shared() -> Result<&'static TestPostgres, String> {
        SHARED.get_or_init(TestPostgres::start).as_ref().map_err(Clone::clone)
    }

    /// A server of this caller's own: the external one if configured, else a new cluster.
    pub fn start() -> Result<TestPostgres, String> {
        if let Ok(url) = std::env::var(URL_VARIABLE) {
            let bin = find_bin().ok();
            let base_url = url.trim_end_matches('/').to_owned();
            return Ok(TestPostgres { admin_url: base_url.clone(), base_url, bin, supervisor: None });
        }
        TestPostgres::start_cluster(&[])
    }

    /// A new cluster of this caller's own, whatever the environment says (for tests that stop
    /// and start the server), with extra `postgres -c` settings.
    pub fn start_cluster(settings: &[(&str, &str)]) -> Result<TestPostgres, String> {
        TestPostgres::start_cluster_with(settings, None)
    }

    /// A new cluster of this caller's own with `ssl = on`, serving `tls`'s certificate.
    pub fn start_cluster_tls(tls: &ServerTls, settings: &[(&str, &str)]) -> Result<TestPostgres, String> {
        TestPostgres::start_cluster_with(settings, Some(tls))
    }

    fn start_cluster_with(settings: &[(&str, &str)], tls: Option<&ServerTls>) -> Result<TestPostgres, String> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        let parent = tempfile::Builder::new().prefix("pg-test-").tempdir().map_err(|e| format!("tempdir: {e}"))?.keep();
        let data = parent.join("data");
        if as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&parent))?;
        }
        let mut initdb = user_command(as_postgres, &bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]);
        run(&mut initdb)?;
        let mut settings = settings.to_vec();
        if let Some(tls) = tls {
            tls.install(&data, as_postgres)?;
            settings.extend([("ssl", "on"), ("ssl_cert_file", "server.crt"), ("ssl_key_file", "server.key")]);
            if tls.client_ca_pem.is_some() {
                settings.push(("ssl_ca_file", "client_ca.crt"));
            }
        }
        let port = free_port()?;
        let supervisor = supervise(as_postgres, &bin, &data, &parent, port, &settings)?;
        let base_url = format!("postgresql://postgres@127.0.0.1:{port}");
        let cluster = TestPostgres {
            admin_url: format!("{base_url}/postgres"),
            base_url,
            bin: Some(bin),
            supervisor: Some(Mutex::new(supervisor)),
        };
        cluster.wait_until_ready()?;
        Ok(cluster)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> Result<String, String> {
        let name = format!("t{}_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed), fastish_nonce());
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(format!("{}/{name}", self.base_url))
    }

    /// Runs one SQL command as the administrator (in the `postgres` database).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in(&self.admin_url, sql)
    }

    /// Runs SQL in a given database (by URL).
    pub fn psql_in(&self, url: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.as_ref().map_or_else(|| PathBuf::from("psql"), |bin| bin.join("psql"));
        let output = Command::new(psql)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !output.status.success() {
            return Err(format!("psql `{sql}`: {}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits until it is down.
    /// Only for a cluster this process started.
    pub fn stop(&self) -> Result<(), String> {
        self.command("stop")?;
        let deadline = Instant::now() + START_TIMEOUT;
        while self.is_ready() {
            if Instant::now() > deadline {
                return Err("the server did not stop".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        self.command("start")?;
        self.wait_until_ready()
    }

    fn command(&self, command: &str) -> Result<(), String> {
        let supervisor = self.supervisor.as_ref().ok_or("this server was not started by the tests")?;
        let mut supervisor = supervisor.lock().unwrap_or_else(PoisonError::into_inner);
        writeln!(supervisor.commands, "{command}").map_err(|e| format!("supervisor: {e}"))?;
        supervisor.commands.flush().map_err(|e| format!("supervisor: {e}"))
    }

    fn port(&self) -> Option<u16> {
        self.supervisor.as_ref().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).port)
    }

    fn is_ready(&self) -> bool {
        let (Some(bin), Some(port)) = (&self.bin, self.port()) else { return true };
        Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.is_ready() {
            if Instant::now() > deadline {
                return Err("PostgreSQL did not start within 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// TLS for a cluster of [`TestPostgres::start_cluster_tls`].
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    /// The server's certificate, then any intermediates (PEM).
    pub cert_pem: String,
    /// The server's private key (PEM).
    pub key_pem: String,
    /// The CA client certificates must chain to (`ssl_ca_file`), if any.
    pub client_ca_pem: Option<String>,
    /// `pg_hba.conf` lines in place of initdb's, after `local all all trust`. The administrator
    /// (`postgres`, over TCP to 127.0.0.1, TLS preferred) must still get in.
    pub hba: Option<String>,
}

impl ServerTls {
    /// Writes the files into the data directory, readable by the server only.
    fn install(&self, data: &Path, as_postgres: bool) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let mut files = vec![("server.crt", self.cert_pem.as_str()), ("server.key", self.key_pem.as_str())];
        if let Some(ca) = &self.client_ca_pem {
            files.push(("client_ca.crt", ca));
        }
        let hba = self.hba.as_ref().map(|lines| format!("local all all trust\n{lines}\n"));
        if let Some(hba) = &hba {
            files.push(("pg_hba.conf", hba));
        }
        for (name, content) in files {
            let path = data.join(name);
            std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if as_postgres {
                run(Command::new("chown").args(["postgres:postgres"]).arg(&path))?;
            }
        }
        Ok(())
    }
}

fn fastish_nonce() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

/// The newest installed PostgreSQL's binaries.
fn find_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "PostgreSQL is not installed (no /usr/lib/postgresql): run scripts/test, which installs it, \
             or set DATABROKER_TEST_POSTGRES_URL"
                .to_owned()
        })?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server binaries under /usr/lib/postgresql".to_owned())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn user_command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The supervisor script: `$1` data directory, `$2` port, `$3` bin directory, `$4` the directory
/// to delete at the end, `$5` extra `-c` settings.
const SUPERVISOR: &str = r#"
data="$1" port="$2" bin="$3" dir="$4" extra="$5"
start() { "$bin/postgres" -D "$data" -p "$port" -k "$data" -c listen_addresses=127.0.0.1 -c max_connections=200 $extra >>"$dir/server.log" 2>&1 & pid=$!; }
start
while read -r command; do
  case "$command" in
    stop) kill -INT "$pid"; wait "$pid" ;;
    start) start ;;
  esac
done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir"
"#;

fn supervise(
    as_postgres: bool,
    bin: &Path,
    data: &Path,
    parent: &Path,
    port: u16,
    settings: &[(&str, &str)],
) -> Result<Supervisor, String> {
    let mut extra: Vec<String> = vec!["-c fsync=off".to_owned(), "-c full_page_writes=off".to_owned()];
    extra.retain(|s| !settings.iter().any(|(name, _)| s.contains(&format!("{name}="))));
    extra.extend(settings.iter().map(|(name, value)| format!("-c {name}={value}")));
    let mut command = user_command(as_postgres, Path::new("/bin/sh"));
    command
        .args(["-c", SUPERVISOR, "supervisor"])
        .arg(data)
        .arg(port.to_string())
        .arg(bin)
        .arg(parent)
        .arg(extra.join(" "))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let commands = child.stdin.take().ok_or("no supervisor pipe")?;
    Ok(Supervisor { _child: child, commands, port })
}
