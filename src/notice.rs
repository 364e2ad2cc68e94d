//! The one way to tell the operator something outside the report: errors,
//! interruptions, a wait that gave up. A line on stderr, `ebsnap: message`,
//! or with `--log-format json` a log event like every other line, so a log
//! shipper never meets a line it cannot parse.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether notices are JSON log events rather than `ebsnap: ...` lines.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

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
        eprintln!("ebsnap: {message}");
    }
}
