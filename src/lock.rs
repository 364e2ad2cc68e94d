//! One run per job at a time on a host: an advisory lock on a file.
//!
//! flock(2) through std's `File::try_lock`: the kernel releases it when the
//! process exits, however it exits, so a crash never leaves a stale lock. The
//! holder writes its pid into the file so a refused run can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Held for the whole run; dropping it releases the lock.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    pub path: PathBuf,
}

impl JobLock {
    /// Takes the job's lock, or fails at once (never waits) naming the job and
    /// the pid of the run that holds it.
    pub fn acquire(path: &Path, job: &str) -> Result<JobLock> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            // ~/.cache may not exist yet on a fresh host; failing here shows
            // up as the open error below, with its advice.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot open the lock file {}: pass --lock-file PATH in a writable place",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("pid {pid}"),
                };
                bail!(
                    "job {job} is already running ({holder} holds {}): this run did nothing; \
                     it will run again at its next scheduled time",
                    path.display()
                );
            }
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(JobLock {
            _file: file,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_job_and_pid_until_the_first_lets_go() {
        let path =
            std::env::temp_dir().join(format!("ebsnap-lock-test-{}.lock", std::process::id()));
        let first = JobLock::acquire(&path, "nightly").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );

        let err = JobLock::acquire(&path, "nightly").unwrap_err().to_string();
        assert!(err.starts_with("job nightly is already running"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );

        drop(first);
        // Another test of this binary may be spawning a process right now:
        // between its fork and exec, the child briefly shares our open
        // files (and so the lock). Give that window a moment to close.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let again = loop {
            match JobLock::acquire(&path, "nightly") {
                Ok(lock) => break lock,
                Err(err) if std::time::Instant::now() < deadline => {
                    assert!(err.to_string().contains("already running"), "{err}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(err) => panic!("the lock was not released: {err}"),
            }
        };
        drop(again);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unwritable_place_says_how_to_fix_it() {
        // A regular file as the parent: no directory can be made there.
        let file = std::env::temp_dir().join(format!("ebsnap-lock-parent-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let err = JobLock::acquire(&file.join("x.lock"), "default")
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_file(&file);
        assert!(err.contains("--lock-file"), "{err}");
    }
}
