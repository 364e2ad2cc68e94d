//! ebsnap's integration tests, in one test binary: the real `ebsnap` binary
//! against an EC2 emulator (moto's server) on 127.0.0.1, one emulator per
//! test, often through the harness's fault proxy and EC2 twin (`support`).
//!
//! Run them all with `bash tests/run-all.sh` (installs moto and faketime), or,
//! once those are installed, `. tests/install-deps.sh && cargo test --test it`;
//! one module with e.g. `cargo test --test it faults::`.

mod e2e;
mod faults;
mod host;
mod restore;
mod support;
