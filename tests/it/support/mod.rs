//! Test harness for ebsnap's integration tests: one EC2 emulator (moto's
//! server) per test, with a movable clock (libfaketime), an SDK client pointed
//! at it for seeding and asserting, a runner for the real `ebsnap` binary, and
//! a fault-injecting proxy with the EC2 twin between the two.
//!
//! Run the tests with `bash tests/run-all.sh`: it installs the emulator and
//! faketime and exports EBSNAP_MOTO_SERVER, EBSNAP_MOTO_AMIS and EBSNAP_FAKETIME_LIB.
//!
//! Only 127.0.0.1 is ever contacted: the emulator binds there, the SDK client
//! and the binary are pointed there, and the binary gets static test
//! credentials, no instance metadata and an empty HOME.
//!
//! Everything the tests use is re-exported here: `use crate::support::*`.

mod binary;
mod cron;
mod emulator;
mod fleet;
mod proxy;
mod report;
mod sigv4;
mod state;
mod tempdir;

/// The EC2 twin's IAM: every EC2 request judged against a policy as EC2
/// judges it (`FaultPlan::iam_policy`).
pub mod iam;
/// The EC2 twin: consistency window, slow creates, snapshot states and limits.
pub mod twin;

pub use binary::*;
pub use cron::*;
pub use emulator::*;
pub use fleet::*;
pub use proxy::*;
pub use report::*;
pub use state::*;
pub use tempdir::*;

pub const REGION: &str = "us-east-1";
pub const AZ: &str = "us-east-1a";
/// An AMI from moto 5.2.5's built-in list (root device /dev/sda1).
pub const AMI: &str = "ami-12c6146b";
/// Account id moto uses for everything created with the test credentials.
pub const ACCOUNT_ID: &str = "123456789012";

const HOW_TO_RUN: &str = "run the tests with `bash tests/run-all.sh`, which installs the EC2 \
                          emulator (moto) and faketime";
/// Safety net only: a hung binary fails the test instead of hanging it forever.
const EBSNAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// The time scale of the tests: every ebsnap the harness runs gets it
/// (`EBSNAP_TIME_SCALE`, src/timing.rs), and the EC2 twin runs EC2's waits
/// (consistency windows, per-volume windows, pending periods, archive
/// tiering) by it, so both sides of every wait run this many times faster
/// than documented, and the scenarios keep their order. Tests state
/// durations as documented (EC2's 15 s, ebsnap's `--timeout 10s`) and
/// `scaled` says how long that takes here.
pub const TIME_SCALE: u32 = 10;

/// How long `documented` (of EC2's or ebsnap's time) takes in the tests.
pub fn scaled(documented: std::time::Duration) -> std::time::Duration {
    documented / TIME_SCALE
}
