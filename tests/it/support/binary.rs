//! Running the binary against the emulator: to the end, or in the background
//! for tests that signal or race it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Emulator, FaultProxy, EBSNAP_TIMEOUT, REGION, TIME_SCALE};

impl Emulator {
    /// `ebsnap ARGS` against this emulator, with test credentials and an empty HOME.
    pub fn ebsnap(&self, args: &[&str]) -> EbsnapRun {
        self.ebsnap_cmd(args).run()
    }

    pub fn ebsnap_cmd(&self, args: &[&str]) -> EbsnapCommand<'_> {
        EbsnapCommand {
            emulator: self,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("AWS_ENDPOINT_URL".into(), Some(self.endpoint_url())),
                ("AWS_ACCESS_KEY_ID".into(), Some("test".into())),
                ("AWS_SECRET_ACCESS_KEY".into(), Some("test".into())),
                ("AWS_REGION".into(), Some(REGION.into())),
                ("AWS_EC2_METADATA_DISABLED".into(), Some("true".into())),
                ("EBSNAP_TIME_SCALE".into(), Some(TIME_SCALE.to_string())),
                // The default lock file lives here: one per emulator, so tests
                // running in parallel never hold each other's job lock.
                (
                    "XDG_RUNTIME_DIR".into(),
                    Some(self.dir.path().display().to_string()),
                ),
            ],
            stdout_file: None,
        }
    }
}

pub struct EbsnapCommand<'a> {
    emulator: &'a Emulator,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    /// A file stdout goes to instead of the harness's pipe (`/dev/full`).
    stdout_file: Option<PathBuf>,
}

impl EbsnapCommand<'_> {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), Some(value.to_string())));
        self
    }

    /// Sends stdout to `path` (opened for writing) instead of capturing it.
    pub fn stdout_to(mut self, path: &Path) -> Self {
        self.stdout_file = Some(path.to_path_buf());
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), None));
        self
    }

    /// Runs the binary to the end.
    pub fn run(self) -> EbsnapRun {
        self.spawn().wait()
    }
}

/// One finished run of the binary.
pub struct EbsnapRun {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for EbsnapRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- ebsnap {}", self.args.join(" "))?;
        writeln!(f, "--- env: {}", self.env.join(" "))?;
        writeln!(f, "--- exit code: {}", self.code)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        writeln!(f, "--- stderr:\n{}", self.stderr)?;
        write!(f, "---")
    }
}

impl EbsnapRun {
    pub fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    pub fn assert_success(&self) -> &Self {
        self.assert_exit(0)
    }

    /// stdout parsed as the one JSON document `--output json` prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{self}"))
    }
}

// In the background (for tests that signal or race it)

impl EbsnapCommand<'_> {
    /// Points the binary at `proxy` instead of the emulator.
    pub fn via(self, proxy: &FaultProxy) -> Self {
        let url = proxy.endpoint_url();
        self.env("AWS_ENDPOINT_URL", &url)
    }

    /// Starts the binary and returns at once; `RunningEbsnap::wait` collects it.
    pub fn spawn(self) -> RunningEbsnap {
        let home = self.emulator.dir.path().join("home");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebsnap"));
        cmd.args(&self.args)
            // Hermetic: nothing from the developer's or CI's environment (real AWS
            // profiles, credentials, CA bundles, RUST_LOG) reaches the binary.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        match &self.stdout_file {
            Some(path) => cmd.stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
            ),
            None => cmd.stdout(Stdio::piped()),
        };
        let mut shown_env = Vec::new();
        for (k, v) in &self.env {
            match v {
                Some(v) => {
                    cmd.env(k, v);
                    shown_env.push(format!("{k}={v}"));
                }
                None => {
                    cmd.env_remove(k);
                }
            }
        }
        let mut child = cmd.spawn().expect("spawn the ebsnap binary");
        let out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take().expect("stderr pipe");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut out_pipe) = out_pipe {
                let _ = out_pipe.read_to_end(&mut buf);
            }
            buf
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_buf = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match err_pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => err_buf.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
        });
        RunningEbsnap {
            child,
            args: self.args,
            env: shown_env,
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
            stderr,
        }
    }
}

/// A binary started with `EbsnapCommand::spawn`; killed on drop if still running.
pub struct RunningEbsnap {
    child: Child,
    args: Vec<String>,
    env: Vec<String>,
    out_reader: Option<std::thread::JoinHandle<Vec<u8>>>,
    err_reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl RunningEbsnap {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the binary wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(
            status.success(),
            "kill -s {name} {} failed: {status}",
            self.pid()
        );
    }

    /// Waits for the binary to exit (killing it after the harness's safety net).
    pub fn wait(mut self) -> EbsnapRun {
        let deadline = Instant::now() + EBSNAP_TIMEOUT;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for ebsnap") {
                break status;
            }
            if Instant::now() > deadline {
                timed_out = true;
                let _ = self.child.kill();
                break self.child.wait().expect("wait for killed ebsnap");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self
            .out_reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        if let Some(r) = self.err_reader.take() {
            let _ = r.join();
        }
        let run = EbsnapRun {
            args: std::mem::take(&mut self.args),
            env: std::mem::take(&mut self.env),
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: self.stderr_so_far(),
        };
        if timed_out {
            panic!("ebsnap did not finish within {EBSNAP_TIMEOUT:?}, killed\n{run}");
        }
        run
    }
}

impl Drop for RunningEbsnap {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds; false when `timeout` (a safety net) passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
