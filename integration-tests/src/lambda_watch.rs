//! Functions as real Lambda binaries: `cargo lambda watch --only-lambda-apis` serves the
//! Lambda Runtime API, the function's binary (the one `make test` built) runs against it
//! as it would in AWS, and invocations go through the emulator's invoke API.
//!
//! The binary is started here rather than by the emulator: the emulator would
//! `cargo run -p <function>`, which resolves features for that package alone and so
//! recompiles much of the SDK stack the workspace build already has.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;
use crate::moto::{venv_bin, workspace_root};

/// A running emulator and function binary; both stopped when dropped.
pub struct LambdaWatch {
    emulator: Child,
    function: Child,
    pub port: u16,
}

/// In this mode the emulator hosts one function, named `_`.
const HOSTED_FUNCTION: &str = "_";

impl LambdaWatch {
    /// Starts the emulator and the function binary `binary`, which sees `env`.
    pub fn start(env: &[(String, String)], binary: &str) -> Result<LambdaWatch> {
        use std::os::unix::process::CommandExt;
        let cargo_lambda = venv_bin("cargo-lambda");
        if !cargo_lambda.exists() {
            return Err(format!("{} is missing: run `make venv`", cargo_lambda.display()).into());
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), Into::into);
        let exe = target.join("debug").join(binary);
        if !exe.exists() {
            return Err(format!(
                "{} is not built: run `cargo build --workspace --all-targets`",
                exe.display()
            )
            .into());
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_dir = target.join("lambda-watch-logs");
        std::fs::create_dir_all(&log_dir)?;
        let log = std::fs::File::create(log_dir.join(format!("watch-{port}.log")))?;
        let mut emulator = Command::new(cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(workspace_root())
            .env("PATH", path_with_venv())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        if let Err(e) = wait_listening(&mut emulator, port, Duration::from_secs(60)) {
            let _ = emulator.kill();
            return Err(e);
        }
        let log = std::fs::File::create(log_dir.join(format!("{binary}-{port}.log")))?;
        let function = Command::new(exe)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", HOSTED_FUNCTION)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(LambdaWatch {
            emulator,
            function,
            port,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Invokes the function with an event file the way a developer would:
    /// `cargo lambda invoke --data-file <file>`. Returns the response JSON.
    pub fn invoke_cli(&self, data_file: &str) -> Result<serde_json::Value> {
        let out = Command::new(venv_bin("cargo-lambda"))
            .args([
                "lambda",
                "invoke",
                HOSTED_FUNCTION,
                "--data-file",
                data_file,
            ])
            .args(["-A", "127.0.0.1", "-P", &self.port.to_string()])
            .current_dir(workspace_root())
            .env("PATH", path_with_venv())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "cargo lambda invoke failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait()? {
            return Err(format!(
                "cargo lambda watch exited with {status} (see target/lambda-watch-logs)"
            )
            .into());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("cargo lambda watch did not start listening".into())
}

fn path_with_venv() -> String {
    let venv = venv_bin("").display().to_string();
    format!("{venv}:{}", std::env::var("PATH").unwrap_or_default())
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        let _ = self.function.kill();
        let _ = self.function.wait();
        let group = format!("-{}", self.emulator.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.emulator.wait();
    }
}
