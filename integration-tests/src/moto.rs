//! The local AWS: a moto server on a free loopback port, started from the project venv.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

use crate::Result;

/// The region everything local lives in.
pub const REGION: &str = "eu-west-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// A running moto server; stopped when dropped.
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

/// The workspace root (this crate lives in `integration-tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The project-local Python venv (`make venv` creates it).
pub fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("PULSELAKE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    venv.join("bin").join(tool)
}

/// A tool of the partner checkers' venv (`.venv-partners`: schemathesis, fhir.resources).
pub fn partners_venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("PULSELAKE_PARTNERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-partners"));
    venv.join("bin").join(tool)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Moto {
    /// Starts a fresh, empty moto server and waits until it answers.
    pub fn start() -> Result<Moto> {
        let bin = venv_bin("moto_server");
        if !bin.exists() {
            return Err(format!(
                "{} is missing: run `make venv` to install the local AWS stack",
                bin.display()
            )
            .into());
        }
        let mut last_err = String::new();
        // A port found free can be taken before moto binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let log_dir = workspace_root().join("target").join("moto-logs");
            std::fs::create_dir_all(&log_dir)?;
            let log = std::fs::File::create(log_dir.join(format!("moto-{port}.log")))?;
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
            let mut moto = Moto {
                child: Some(child),
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            match moto.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return Ok(moto),
                Err(e) => {
                    last_err = e.to_string();
                    moto.stop();
                }
            }
        }
        Err(format!("moto server did not start: {last_err}").into())
    }

    /// Uses a server someone else started (e.g. `make stack`).
    pub fn attach(endpoint: impl Into<String>) -> Moto {
        Moto {
            child: None,
            endpoint: endpoint.into(),
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        use std::io::{Read, Write};
        let start = Instant::now();
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        while start.elapsed() < timeout {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(format!("moto exited with {status}").into());
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /moto-api/data.json HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && buf.starts_with(b"HTTP/1.")
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("timed out waiting for moto".into())
    }

    /// SDK configuration pointing every client at this server.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    /// Environment for a process (a Lambda binary) that should use this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SDK configuration for an endpoint (moto directly, or a proxy in front of it).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    pulselake_adapters::aws::with_client_policy(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "pulselake-local",
        ))
        .load()
        .await
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
