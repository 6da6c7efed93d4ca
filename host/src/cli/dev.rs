//! `wasmstate dev PATH`: the inner loop. Builds the crate at PATH for
//! `wasm32-wasip2`, deploys it to the server (starting one on the URL's
//! loopback address when none answers), and does both again whenever a
//! file of the crate changes, printing each deploy's result.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::Value;

use super::deploy::{self, DeployArgs, VerifyArgs};
use crate::client::Client;

/// How often the crate's files are looked at.
const POLL: Duration = Duration::from_millis(300);
/// How long files must stay unchanged before a build starts (an editor
/// saving several files, say).
const SETTLE: Duration = Duration::from_millis(200);
/// How long a started server may take to answer.
const SERVER_START: Duration = Duration::from_secs(20);
/// How long a started server may take to stop.
const SERVER_STOP: Duration = Duration::from_secs(10);

/// What `wasmstate dev` is asked.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The crate to build and deploy.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The service to deploy it as (default: the crate's name).
    #[arg(long)]
    service: Option<String>,
    #[command(flatten)]
    deploy: DeployArgs,
    /// Where a server started by `dev` keeps its data (default:
    /// PATH/target/wasmstate-dev).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Build and deploy once, then stop, without watching.
    #[arg(long)]
    once: bool,
}

/// Runs the loop until interrupted (or, with `--once`, after one round).
pub async fn dev(url: &str, client: &Client, args: DevArgs) -> anyhow::Result<()> {
    let root = std::fs::canonicalize(&args.path).with_context(|| format!("cannot read {}", args.path.display()))?;
    let package = package_name(&root.join("Cargo.toml"))?;
    let service = args.service.clone().unwrap_or_else(|| package.clone());
    let data_dir = args.data_dir.clone().unwrap_or_else(|| root.join("target/wasmstate-dev"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    // Absolute, so the watch compares it with the paths it walks.
    let data_dir = std::fs::canonicalize(&data_dir)?;
    let _server = ensure_server(url, client, &data_dir).await?;
    loop {
        let deployed = round(client, &args, &service).await;
        if args.once {
            return deployed;
        }
        if let Err(error) = deployed {
            println!("error: {error:#}");
        }
        // After the build: what it wrote beside the sources (a new
        // Cargo.lock, say) is no change.
        let seen = snapshot(&root, &data_dir);
        println!("watching {} for changes (Ctrl-C stops)", args.path.display());
        wait_for_change(&root, &data_dir, seen).await;
    }
}

/// One build and deploy; its result printed.
async fn round(client: &Client, args: &DevArgs, service: &str) -> anyhow::Result<()> {
    println!("building {}", args.path.display());
    let started = Instant::now();
    let path = args.path.clone();
    let component = tokio::task::spawn_blocking(move || build(&path)).await??;
    let reply = deploy::deploy(&client.admin(), service, &component, &VerifyArgs::default(), &args.deploy).await?;
    let reply: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
    println!(
        "deployed {} version {} ({}) in {:.1} s",
        reply["service"].as_str().unwrap_or(service),
        reply["version"],
        reply["kind"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `[package]` name of the manifest at `path`.
fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("name").map(str::trim_start).and_then(|l| l.strip_prefix('='))
        {
            return Ok(value.trim().trim_matches('"').to_string());
        }
    }
    bail!("{} has no [package] name", manifest.display())
}

/// Builds the crate at `path` for `wasm32-wasip2` in release, cargo's own
/// messages on stderr; answers the component it made.
fn build(path: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .current_dir(path)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut component = None;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(message) = serde_json::from_str::<Value>(&line?) else { continue };
        if message["reason"] == "compiler-artifact" {
            let mut files = message["filenames"].as_array().into_iter().flatten().filter_map(Value::as_str);
            if let Some(file) = files.rfind(|f| f.ends_with(".wasm")) {
                component = Some(PathBuf::from(file));
            }
        }
    }
    if !child.wait()?.success() {
        bail!("the build failed (cargo's messages above); fix it and save again");
    }
    component.context("the build made no .wasm: is the crate a cdylib?")
}

/// A server `dev` started; stopped when dropped.
struct StartedServer(Child);

impl Drop for StartedServer {
    /// Asks the server to stop (SIGTERM: it drains and closes its journal),
    /// and kills it if it has not stopped in [`SERVER_STOP`].
    fn drop(&mut self) {
        // SAFETY: kill sends a signal to our own child; no memory is shared.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + SERVER_STOP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server on `url` (a loopback address) when none answers there.
async fn ensure_server(url: &str, client: &Client, data_dir: &Path) -> anyhow::Result<Option<StartedServer>> {
    if client.get("/healthz").await.is_ok() {
        println!("using the server at {url}");
        return Ok(None);
    }
    let listen = loopback_address(url)
        .with_context(|| format!("no server answers at {url}, and it is not a loopback address to start one on"))?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log_path = data_dir.join("server.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("serve")
        .arg("--listen")
        .arg(&listen)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    stop_with_parent(&mut command);
    let server = StartedServer(command.spawn().context("cannot start a server")?);
    let deadline = Instant::now() + SERVER_START;
    while client.get("/healthz").await.is_err() {
        if Instant::now() > deadline {
            bail!("the server started on {listen} did not answer; its log is {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("started a server at {url} (data in {}, log in {})", data_dir.display(), log_path.display());
    Ok(Some(server))
}

/// Asks the kernel to stop the child when `dev` ends, however it ends
/// (strictly: when the thread that started it ends; it is a runtime worker,
/// which lives as long as `dev`).
fn stop_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `host:port` of an `http://` URL on a loopback host.
fn loopback_address(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    (ip.is_loopback() && port.parse::<u16>().is_ok()).then(|| format!("{host}:{port}"))
}

/// Each file of the crate with when it last changed and its size; the
/// build's output (`target`), hidden directories and `data_dir` are not
/// the crate's.
fn snapshot(root: &Path, data_dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !(name.starts_with('.') || name == "target" || path == data_dir) {
                    dirs.push(path);
                }
            } else {
                files.insert(path, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
            }
        }
    }
    files
}

/// Waits until the crate's files differ from `seen` and then stay the same
/// for [`SETTLE`].
async fn wait_for_change(root: &Path, data_dir: &Path, seen: BTreeMap<PathBuf, (SystemTime, u64)>) {
    let mut now = seen.clone();
    while now == seen {
        tokio::time::sleep(POLL).await;
        now = snapshot(root, data_dir);
    }
    loop {
        tokio::time::sleep(SETTLE).await;
        let settled = snapshot(root, data_dir);
        if settled == now {
            return;
        }
        now = settled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_name_comes_from_the_package_table() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "[workspace]\n\n[package]\nname = \"my-tally\"\nversion = \"0.1.0\"\n").unwrap();
        assert_eq!(package_name(&manifest).unwrap(), "my-tally");
        std::fs::write(&manifest, "[dependencies]\nname = \"x\"\n").unwrap();
        assert!(package_name(&manifest).is_err());
    }

    #[test]
    fn a_server_is_started_only_on_a_loopback_address() {
        assert_eq!(loopback_address("http://127.0.0.1:8080").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(loopback_address("http://localhost:9000/").as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(loopback_address("http://[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(loopback_address("http://10.0.0.5:8080"), None);
        assert_eq!(loopback_address("https://127.0.0.1:8080"), None);
    }

    #[test]
    fn the_snapshot_sees_the_crate_s_files_and_not_its_build() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("target/x")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "a").unwrap();
        std::fs::write(dir.path().join("target/x/out"), "b").unwrap();
        let files = snapshot(dir.path(), &dir.path().join("target/wasmstate-dev"));
        assert_eq!(files.keys().collect::<Vec<_>>(), [&dir.path().join("src/lib.rs")]);
    }
}
