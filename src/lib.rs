//! ebsnap keeps EBS snapshot backups of tagged EC2 instances. This page is the
//! architecture. The README and docs/ cover how to use ebsnap and what it
//! promises: docs/reference/ holds the tag contract, the safety rules and the
//! exit codes.
//!
//! One run goes like this. First the config is resolved, once, from the flags
//! and the environment. Then the run is split into units of work, one per
//! account × region, and all units run at once, each with its own clients,
//! pacing and report section. In each unit: **discover** what is there (EC2
//! reads only), **plan** what to do (a pure function, no I/O), then
//! **execute** the plan's two steps. The snapshot step and the purge step
//! overlap volume by volume: a volume's deletes wait only for that volume's
//! create (and, with `--wait`, for its completion), not for the other volumes.
//! Every outcome is folded into **one report**. The report gives the **exit
//! code**: 0 when everything planned was done, 1 when something failed, 2 when
//! nothing was attempted.
//!
//! ```text
//! flags/env ──► Config ──► per account × region: discover ──► Plan ──► execute ──► Report ──► exit code
//! ```
//!
//! # Layers
//!
//! Each layer only calls down this flow, never up: `discovery` knows nothing
//! of the plan, the plan does no I/O, `backup/` carries out a plan but does not
//! decide what goes in it, and rendering does not change the report. The
//! leaves (`values`, `inventory`, `exit`, `notice`) depend on nothing else in
//! the crate, so any layer may use them.
//!
//! | file | what it does |
//! |---|---|
//! | `main.rs` | parse the command line, run the command, print the report, exit with its code |
//! | `lib.rs` | these crate docs: the architecture |
//! | `values.rs` | the parsers behind the flags (durations with units `s m h d w`, job names, region names, role ARNs, rates, the user's `--snapshot-tag KEY=VALUE`), EC2's tag limits, durations and ages shown the way a user writes them, and the small enums of the command line. A leaf: it knows nothing of clap or of the rest of the crate |
//! | `cli/` | the clap types only: what the user may type. `groups.rs` holds the groups of flags (one `Args` struct per help heading: selection, retention, hooks, AWS ...) and `mod.rs` the commands, each flattening the groups it reads, so clap refuses a flag the command does not use; it maps `values.rs`'s parsers and enums onto flags, so a bad flag is refused before any call to AWS. Also the man page, and (in tests) the renderer of docs/reference/cli.md |
//! | `config.rs` | `Config`, built once from the CLI and the environment: plain data (retention, keep-min, selector, job, regions, accounts, output, whether stdout is a terminal, lock file, pacing, time budget, hooks). Also the plain request types of the other commands (`ListFilter`, `RestoreRequest`, ...) |
//! | `exit.rs` | `ExitStatus`: the exit codes 0, 1 and 2, ordered by severity, so the worse of two is their `max`. docs/reference/exit-codes.md is this contract in words |
//! | `notice.rs` | the one way to tell the operator something outside the report (errors, interruptions, a wait that gave up): one line on stderr, `ebsnap: ...`, or a log event with `--log-format json`, so a log shipper never meets a line it cannot parse |
//! | `aws/mod.rs` | the EC2 clients from the standard AWS chain (environment, profile, instance role) with `--region`, `--profile` and `--endpoint-url` on top. Also the timeouts (5 s to connect, 15 s per attempt, 40 s per call with the SDK's retries), and SDK errors turned into one line a person can act on |
//! | `aws/accounts.rs` | the accounts and the units of work. With `--assume-role`, each role is assumed through STS (session name `ebsnap-JOB`, `--external-id`) with the chain's own credentials, and renewed before they expire. It lists the regions with `--all-regions` (DescribeRegions) and makes one unit per account × region. Before any call, it refuses two roles in one account, and `--assume-role` with `list`, `check` or `restore`. A role that cannot be assumed, or an account whose regions cannot be listed, fails that account's units only (`assume-role`, `list-regions`) |
//! | `discovery.rs` | the EC2 reads: the instances carrying the selection tag, their attached volumes, the volumes tagged `ebsnap:skip=true` (one filtered DescribeVolumes), the job's snapshots, and, for `list`, `check` and a purge with `--orphans-after`, which of the snapshots' volumes still exist (those no tagged instance holds, by DescribeVolumes filtered on `volume-id`, 200 a call). Always filtered on the server and paginated, with no per-instance, per-volume or per-snapshot calls, so a run costs the same few calls at any fleet size. EC2's types become `inventory`'s here |
//! | `inventory.rs` | what discovery found, as plain data in ebsnap's own small types. Also the tag contract's keys (`ebsnap:job`, `ebsnap:instance-id`, `ebsnap:device`, `ebsnap:run-id`, `ebsnap:skip`, `ebsnap:source-*`, `ebsnap:restored-from`), public because IAM policies rely on them. Snapshots are small: the id is held inline, and the strings many snapshots repeat are shared |
//! | `plan/` | all the judgement, a pure function of (inventory, config, run id, now), in a folder by job (tags, finished requests, kinds, selection, archive, delete guard, orphans, the decision, copies; `plan/mod.rs` lists them): what to create, with each request's description and tags finished (grouped per instance into the sets that are snapshotted together), what to delete and why (`expired`, `error`, `duplicate`, `orphaned`), what to keep and why, which series are orphans (`volume_gone`, `instance_not_selected`), which instances and volumes to skip and why, and whether the delete guard refuses the purge. Unit-tested with hand-built inventories and a fixed clock. `list` and `check` judge with it too |
//! | `retention.rs` | calendar retention (`--keep-last`, `--keep-hourly` ... `--keep-yearly`, `--timezone`): the periods in the job's timezone, and which rule keeps each of a volume's backups, fed newest first. Pure, and asked by the plan |
//! | `backup/mod.rs` | the backup job (`run`, `snapshot`, `purge`): `run` starts every unit at once, and `run_region` does one unit's discover, plan and execute, with the snapshot and purge steps overlapped per volume |
//! | `backup/control.rs` | pacing: token buckets per unit, kept inside EC2's own (100 calls of burst, then `--max-rate`, 5 a second by default), so ebsnap does not lean on `RequestLimitExceeded`. The per-volume gates that let a volume's deletes follow its create. The run's stop signal: SIGINT/SIGTERM and `--timeout`, after which nothing new starts. The retry timings (`RetryTiming`: 6 attempts, 1 s doubling up to 60 s; 15 s for a busy volume; 30 s of settling while EC2's describes lag), held by each region's `Executor` with its client, buckets and stop |
//! | `backup/retry.rs` | one home for retries and failure classes: which failures are tried again (throttled, a lost answer, a busy volume, EC2 not showing a new snapshot yet), the one retry loop every step uses (`retry`: creates, deletes, tags, archives, each attempt paced by control.rs's buckets and timed by its `RetryTiming`), and `create_with_retries` on top of it. A call with no client token is retried only after a look for what this run already made, so a lost answer never makes a duplicate (safety rule 7). The SDK retries none of these calls, because its retries would go round the buckets |
//! | `backup/snapshot.rs` | carries out the plan's creates. In the default mode it sends one CreateSnapshots per instance, so all of the instance's selected volumes are at one instant. The marker, instance and run id, and the user's `--snapshot-tag` tags, go in that call, and then one CreateTags per snapshot adds the device, `Name` and copied tags. With `--per-volume` it sends one CreateSnapshot per volume, with all the tags in the call, and the volumes are not at one instant. The pre-hook and post-hook run around each instance's set |
//! | `backup/purge.rs` | carries out the plan's deletes, checking the job's marker again before each one. A snapshot already gone counts as deleted. A snapshot an AMI uses, or one that is locked, is kept and reported |
//! | `backup/archive.rs` | `--archive-after`: tags the planned snapshots `ebsnap:archived-at` (100 a CreateTags), then sends each to the archive tier (ModifySnapshotTier); a refusal of one already on its way (DescribeSnapshotTierStatus) counts as done |
//! | `backup/wait.rs` | `--wait`: waits until this run's snapshots are completed, within `--wait-timeout` |
//! | `backup/copy.rs` | `--copy-to`: the disaster-recovery copies (CopySnapshot, paced per destination, with a look for this run's copy before trying again), and the purge of the copies in each copy region under `--copy-retention`, planned by `plan/copies.rs` under the same safety rules |
//! | `backup/hooks.rs` | `--pre-hook` and `--post-hook`: `sh -c` in a process group of its own, the `EBSNAP_*` environment, `--hook-timeout` |
//! | `backup/report.rs` | assembles the report from the plan and the outcome of each action, and gives the exit status |
//! | `backup/entries.rs` | the report's entries (created, copied, deleted, archived, kept, failed, skipped) and the closed sets they name: what failed (`FailureAction`), why a snapshot is kept (`WhyKept`: the plan's reason, or in use, locked, withheld), what a dry run found (`Permission`) |
//! | `backup/render.rs` | renders the report as text for people or JSON for programs, streamed to stdout and never held whole. Rendering is pure, so what a person sees is tested like any other decision |
//! | `restore/mod.rs` | `ebsnap restore` |
//! | `restore/decide.rs` | pure, and tested like the plan: which backup run (`--at`), which volumes, and each volume's zone, type, IOPS, throughput, size and device, from what `ec2.rs` read. The refusals that come before any volume is made (exit 2, nothing created) are decided here |
//! | `restore/ec2.rs` | restore's EC2 calls: the describes, CreateVolume (tagged `ebsnap:restored-from` in the call), AttachVolume, and the waits |
//! | `restore/report.rs` | restore's report, in text or JSON |
//! | `list.rs` | `ebsnap list`: the job's snapshots, judged by the same plan as `purge` |
//! | `check.rs` | `ebsnap check`: the freshness of each selected volume, and the orphan series (named, never a failure); the decision is pure and tested |
//! | `metrics.rs` | the Prometheus textfile (`--metrics-file`) of `run`, `snapshot`, `purge` and `check`: gauges named by the book, the job as `ebsnap_job`, per-volume timestamps, failures by action; written atomically, 0644, under a lock shared by the jobs that write one file |
//! | `iam.rs` | the least-privilege policy `ebsnap iam-policy` prints. `examples/iam-policy.json` is its output for the default job, and a test keeps the two identical |
//! | `lock.rs` | the cron lock: one run per job per host |
//! | `timing.rs` | every duration ebsnap waits for or gives up after (timeouts, retry delays, the settle window, polls), and the one way it waits: on tokio's clock, divided by the time scale, 1 unless the test suite's hidden `EBSNAP_TIME_SCALE` says otherwise. Also the one polling loop (`poll`), used by `--wait`, the look after a lost answer and restore's waits |
//! | `memory.rs` | memory tuning: glibc's allocator settings that keep a run's peak small, and no-ops elsewhere |
//!
//! # Tests
//!
//! There are three layers of tests, each for what it does best, and then the
//! EC2 twin on top of the end-to-end tests.
//!
//! 1. **Unit tests** (most tests), in `src/`, of the plan and the other pure
//!    decisions (`restore/decide.rs`, `check`, rendering). They use
//!    hand-built inventories and a fixed clock, and every safety rule has
//!    one.
//! 2. **SDK-mock tests**, in `src/`, with `aws-smithy-mocks`: pagination, EC2
//!    error codes (`RequestLimitExceeded`, `InvalidSnapshot.InUse`,
//!    `UnauthorizedOperation`, ...) and retries. `cargo test --lib` runs
//!    layers 1 and 2 alone, with no emulator.
//! 3. **End-to-end tests**: the real binary against moto's EC2 emulator on
//!    127.0.0.1, with snapshots aged by libfaketime. They assert on the
//!    emulator's state after the run. There is one integration binary,
//!    `tests/it/main.rs`, with these modules:
//!    - `e2e`: the backup job, list, check, metrics.
//!    - `faults`: a fault-injecting proxy between ebsnap and the emulator
//!      (throttling, answers lost after the call took effect, resets, held
//!      calls), overlapping runs, SIGKILL, SIGTERM, bad input, the delete
//!      guard, `--min-interval`. Its real-EC2 scenarios run ebsnap under the
//!      EC2 twin, and its twin probes test each twin behaviour directly.
//!    - `restore`: restores.
//!    - `host`: completions, the man page, cron's bare environment, colour,
//!      JSON logs, IAM.
//!
//!    The harness is `tests/it/support/`, split by job:
//!    - `emulator`: moto's server, one per test, and faketime.
//!    - `state`: reading the emulator's state to assert on.
//!    - `fleet`: the fleet the e2e and fault tests seed.
//!    - `binary`: running the real `ebsnap`, in the foreground or the
//!      background. It gets static test credentials, no instance metadata
//!      and an empty HOME, and talks only to 127.0.0.1.
//!    - `report`: reading ebsnap's JSON report.
//!    - `proxy`: the fault proxy.
//!    - `sigv4`: moto's IAM enforcement, made to accept the AWS SDK for
//!      Rust's signatures.
//!    - `iam`: the IAM evaluator.
//!    - `twin`: the EC2 behaviours moto lacks.
//!    - `cron`: the binary as cron runs it, in cron's bare environment.
//!    - `tempdir`: temporary directories, removed on drop.
//!
//!    The layout itself is checked too: `tests/layout.py` fails on a circle
//!    between modules or an import from a lower layer to a higher one.
//!
//! Run them all with `bash tests/run-all.sh`. It installs moto and faketime
//! (`tests/install-deps.sh`), exports `EBSNAP_MOTO_SERVER` and
//! `EBSNAP_FAKETIME_LIB`, and runs `cargo test --locked --no-fail-fast`, four
//! tests at a time (`RUST_TEST_THREADS`), because the end-to-end tests spend
//! their time waiting, not on the CPU. A missing emulator is a test failure
//! with a clear message, never a silent skip. The examples
//! (`examples/demo.sh`, `examples/demo-fleet.py`) use the same emulator and
//! the same `tests/install-deps.sh`.
//!
//! **moto is not EC2.** It evaluates no IAM condition. It shows a snapshot
//! the moment it exists and completes it at once. It never locks, errors or
//! limits, and it archives and restores at once, refusing nothing and leaving
//! an archived snapshot usable. So the proxy is also an *EC2 twin*: it gives the emulator
//! what real EC2 does. Each behaviour is switched on per test and written from
//! AWS's documentation, with the page cited in the code.
//!
//! - `FaultPlan::iam_policy` (`support/iam`) evaluates IAM as EC2 does. Every
//!   request is judged once for each resource it touches, with that
//!   resource's ARN and condition keys (`aws:RequestTag/*`, `aws:TagKeys`,
//!   `ec2:ResourceTag/*` read from the emulator, `ec2:CreateAction`). A create
//!   that carries tags is judged again as `ec2:CreateTags`. An explicit Deny
//!   wins, and a denial answers 403 `UnauthorizedOperation`. Every command is
//!   tested under the policy `ebsnap iam-policy` prints, unchanged
//!   (`support::printed_policy`, `FaultPlan::under_printed_policy`,
//!   `FaultProxy::assert_no_denials`), in `host`, `restore` and the real-EC2
//!   scenarios of `faults`. The policy printed for another job is the control:
//!   it must be denied this job's creates and deletes.
//! - `consistency_window`, `slow_creates*`, `snapshot_state`, `archived`,
//!   `locked`, `volume_limits` and `tag_limits` (`support/twin`) add what moto
//!   lacks:
//!   - eventual consistency;
//!   - creates carried out after the client gave up;
//!   - snapshots in `error` or `recoverable`;
//!   - the archive tier (`archive_tier`: ModifySnapshotTier,
//!     RestoreSnapshotTier and DescribeSnapshotTierStatus with EC2's states,
//!     refusals and pagination);
//!   - snapshot locks, with DescribeLockedSnapshots, which moto lacks;
//!   - the per-volume rate and pending limits;
//!   - EC2's tag limits.
//!
//!   The twin probes in `faults` test each one directly, and the real-EC2
//!   scenarios run ebsnap under them.
//!
//! If a scenario passes on bare moto and fails through the twin, that is a bug
//! in ebsnap, unless the twin contradicts AWS's documentation. The `harness_*`
//! tests in `host` document moto's own IAM enforcement. They start moto with a
//! small patch to its signature check: moto rebuilds request bodies with `+`
//! for spaces, where the AWS SDK for Rust signs `%20`.
//!
//! # Where a rule lives
//!
//! - **The plan decides** (`plan/`, `restore/decide.rs`): what to create,
//!   what to delete, what to keep, and why. A safety rule about *what* is
//!   deleted or kept lives here, with its unit test.
//! - **`backup/` executes**: it paces, orders (a volume's deletes after its
//!   create), retries (`retry.rs`), and checks the marker again before each
//!   delete. It never adds a delete the plan did not make.
//! - **The report assembles** (`backup/report.rs`): the plan and every
//!   outcome, in one report, and the exit status.
//! - **Render prints** (`backup/render.rs`): text or JSON, and nothing else.

pub mod aws;
pub mod backup;
pub mod check;
pub mod cli;
pub mod config;
mod discovery;
pub mod exit;
pub mod iam;
mod inventory;
pub mod list;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod notice;
mod plan;
pub mod restore;
mod retention;
pub mod timing;
pub mod values;
