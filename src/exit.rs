//! The process exit codes: what cron (and `check`'s monitoring) reads of a
//! run. docs/reference/exit-codes.md is this contract in words.

/// Ordered by severity, so `max` of two is the worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// Everything planned was done.
    Success = 0,
    /// Something failed; the report says what.
    Failure = 1,
    /// Nothing was attempted: bad input, no credentials, no region reachable.
    NothingAttempted = 2,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_what_cron_expects() {
        assert_eq!(ExitStatus::Success as u8, 0);
        assert_eq!(ExitStatus::Failure as u8, 1);
        assert_eq!(ExitStatus::NothingAttempted as u8, 2);
    }
}
