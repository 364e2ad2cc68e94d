//! The one way to tell the operator something outside the report: errors,
//! interruptions, a wait that gave up. A line on stderr, `ebsnap: message`,
//! or with `--log-format json` a log event like every other line, so a log
//! shipper never meets a line it cannot parse.
//!
//! Under systemd, when stderr is the journal, every line on stderr starts
//! with its syslog priority (`<3>` for an error, sd-daemon(3)), so
//! `journalctl -p err` finds the failures.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether notices are JSON log events rather than `ebsnap: ...` lines.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Whether stderr lines carry syslog priority prefixes (stderr is the journal).
static PRIORITIES: AtomicBool = AtomicBool::new(false);

/// Whether stderr is connected to the journal: systemd sets JOURNAL_STREAM
/// to the `device:inode` of the stream it connects stderr to, and a program
/// is to compare it with stderr's own before it trusts it (systemd.exec(5),
/// "JOURNAL_STREAM"), since the variable is inherited by children whose
/// stderr may be elsewhere.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed struct it is given; fd 2 may be
    // closed, which it reports as an error.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut stat) } != 0 {
        return false;
    }
    stat.st_dev as u64 == device && stat.st_ino as u64 == inode
}

/// Starts every stderr line with its syslog priority; set once at start-up
/// when `stderr_is_journal`.
pub fn set_priorities(on: bool) {
    PRIORITIES.store(on, Ordering::Relaxed);
}

/// The prefix of a stderr line of `priority` (syslog: 3 error, 4 warning,
/// 6 info, 7 debug), empty unless stderr is the journal.
pub fn priority_prefix(priority: u8) -> String {
    if PRIORITIES.load(Ordering::Relaxed) {
        format!("<{priority}>")
    } else {
        String::new()
    }
}

/// Sends notices to the log as JSON events instead of plain lines; set once
/// at start-up.
pub fn set_json_logs(on: bool) {
    JSON_LOGS.store(on, Ordering::Relaxed);
}

/// Tells whoever reads stderr `message`, on a line of its own.
pub fn tell(message: &str) {
    if JSON_LOGS.load(Ordering::Relaxed) {
        tracing::warn!("{message}");
    } else {
        // What ebsnap tells outside the report is what cron would mail: an
        // error for the journal.
        eprintln!("{}ebsnap: {message}", priority_prefix(3));
    }
}
