//! `--pre-hook` and `--post-hook`: commands run on the ebsnap host around
//! each instance's snapshot, to quiesce a database for a moment (MongoDB's
//! `db.fsyncLock()`, Redis' `BGSAVE`, `fsfreeze` over ssh).
//!
//! A hook runs through `sh -c` in a process group of its own: a Ctrl-C at
//! the terminal does not kill a post-hook half-way (leaving a database
//! locked), and a hook past `--hook-timeout` is killed with everything it
//! started. Its output goes to the log, never to stdout.

use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Which of the two hooks: its name in messages, logs and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum HookKind {
    PreHook,
    PostHook,
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::values::serde_name(self))
    }
}

/// What a hook is told about the instance, in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookEnv {
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub region: String,
    pub job: String,
}

impl HookEnv {
    fn vars(&self) -> [(&'static str, &str); 4] {
        [
            ("EBSNAP_INSTANCE_ID", &self.instance_id),
            (
                "EBSNAP_INSTANCE_NAME",
                self.instance_name.as_deref().unwrap_or(""),
            ),
            ("EBSNAP_REGION", &self.region),
            ("EBSNAP_JOB", &self.job),
        ]
    }
}

/// Runs `command` through `sh -c`; `Err` says why it failed: its exit
/// status and last line of stderr, a timeout, or that it could not start.
pub(crate) async fn run(
    command: &str,
    which: HookKind,
    env: &HookEnv,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("the {which} could not start: {err}"))?;
    let pid = child.id();
    let instance = env.instance_id.as_str();
    let stdout = child
        .stdout
        .take()
        .map(|out| log_lines(out, which, instance, false));
    let stderr = child
        .stderr
        .take()
        .map(|err| log_lines(err, which, instance, true));
    let output = async {
        let (_, last_error_line) = tokio::join!(
            async {
                if let Some(task) = stdout {
                    task.await;
                }
            },
            async {
                match stderr {
                    Some(task) => task.await,
                    None => None,
                }
            }
        );
        (child.wait().await, last_error_line)
    };
    match tokio::time::timeout(timeout, output).await {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), last_line)) => Err(match last_line {
            Some(line) => format!("the {which} failed ({status}): {line}"),
            None => format!("the {which} failed ({status})"),
        }),
        Ok((Err(err), _)) => Err(format!("the {which} failed: {err}")),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            Err(format!(
                "the {which} did not finish within --hook-timeout {}",
                crate::values::format_duration(
                    chrono::TimeDelta::from_std(timeout).unwrap_or_default()
                )
            ))
        }
    }
}

/// Logs each line a hook prints; returns the last one.
async fn log_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    which: HookKind,
    instance: &str,
    is_stderr: bool,
) -> Option<String> {
    let mut lines = BufReader::new(stream).lines();
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(hook = %which, instance, stderr = is_stderr, "{line}");
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    last
}

/// Kills a hook's whole process group: `sh` and whatever it started (an
/// ssh, say), which killing `sh` alone would leave running.
fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative pid signals that process group only.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv {
        HookEnv {
            instance_id: "i-1".into(),
            instance_name: Some("mongo-1".into()),
            region: "eu-west-1".into(),
            job: "nightly".into(),
        }
    }

    fn temp_file(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ebsnap-hook-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn a_hook_sees_the_instance_in_its_environment() {
        let out = temp_file("env");
        let command = format!(
            "echo \"$EBSNAP_INSTANCE_ID $EBSNAP_INSTANCE_NAME $EBSNAP_REGION $EBSNAP_JOB\" > {}",
            out.display()
        );
        run(&command, HookKind::PreHook, &env(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "i-1 mongo-1 eu-west-1 nightly\n"
        );
        let _ = std::fs::remove_file(out);
    }

    #[tokio::test]
    async fn a_failing_hook_says_its_status_and_last_error_line() {
        let err = run(
            "echo first >&2; echo 'mongo: not connected' >&2; exit 3",
            HookKind::PreHook,
            &env(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            "the pre-hook failed (exit status: 3): mongo: not connected"
        );
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let marker = temp_file("timeout");
        // The child would write the marker after 2 s; the group is killed at 0.2 s.
        let command = format!("(sleep 2; touch {}) & wait", marker.display());
        let started = std::time::Instant::now();
        let err = run(
            &command,
            HookKind::PostHook,
            &env(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            err.starts_with("the post-hook did not finish within --hook-timeout"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the hook's children were killed too");
    }
}
