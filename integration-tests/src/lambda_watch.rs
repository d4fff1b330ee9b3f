//! Functions as real Lambda binaries: `cargo lambda watch` serves the Lambda Runtime
//! API and runs each function's binary under it; invocations go through its invoke API.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;
use crate::moto::{venv_bin, workspace_root};

/// A running `cargo lambda watch`; stopped (with the function processes) when dropped.
pub struct LambdaWatch {
    child: Child,
    pub port: u16,
}

impl LambdaWatch {
    /// Starts the emulator for the given packages, the functions seeing `env`.
    pub fn start(env: &[(String, String)], packages: &[&str]) -> Result<LambdaWatch> {
        use std::os::unix::process::CommandExt;
        let bin = venv_bin("cargo-lambda");
        if !bin.exists() {
            return Err(format!("{} is missing: run `make venv`", bin.display()).into());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_dir = workspace_root().join("target").join("lambda-watch-logs");
        std::fs::create_dir_all(&log_dir)?;
        let log = std::fs::File::create(log_dir.join(format!("watch-{port}.log")))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--quiet",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ]);
        for p in packages {
            cmd.args(["-p", p]);
        }
        for (k, v) in env {
            cmd.arg("--env-var").arg(format!("{k}={v}"));
        }
        let child = cmd
            .current_dir(workspace_root())
            .env("PATH", path_with_venv())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so the function processes it starts stop with it.
            .process_group(0)
            .spawn()?;
        let mut watch = LambdaWatch { child, port };
        watch.wait_ready(Duration::from_secs(60))?;
        Ok(watch)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "cargo lambda watch exited with {status} (see target/lambda-watch-logs)"
                )
                .into());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("cargo lambda watch did not start listening".into())
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Invokes a function with an event file the way a developer would:
    /// `cargo lambda invoke <function> --data-file <file>`. Returns the response JSON.
    pub fn invoke_cli(&self, function: &str, data_file: &str) -> Result<serde_json::Value> {
        let out = Command::new(venv_bin("cargo-lambda"))
            .args([
                "lambda",
                "invoke",
                function,
                "--data-file",
                data_file,
                "-A",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
            ])
            .current_dir(workspace_root())
            .env("PATH", path_with_venv())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "cargo lambda invoke {function} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

fn path_with_venv() -> String {
    let venv = venv_bin("").display().to_string();
    format!("{venv}:{}", std::env::var("PATH").unwrap_or_default())
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}
