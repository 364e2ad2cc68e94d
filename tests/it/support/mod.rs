//! Test harness for ebsnap's end-to-end tests: one EC2 emulator (moto's server)
//! per test, with a movable clock (libfaketime), an SDK client pointed at it for
//! seeding and asserting, and a runner for the real `ebsnap` binary.
//!
//! Run the tests with `bash tests/run-all.sh`: it installs the emulator and
//! faketime and exports EBSNAP_MOTO_SERVER and EBSNAP_FAKETIME_LIB.
//!
//! Only 127.0.0.1 is ever contacted: the emulator binds there, the SDK client
//! and the binary are pointed there, and the binary gets static test
//! credentials, no instance metadata and an empty HOME.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::primitives::DateTimeFormat;
use aws_sdk_ec2::types::{Filter, InstanceType, Placement, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

pub const REGION: &str = "us-east-1";
pub const AZ: &str = "us-east-1a";
/// An AMI from moto 5.2.5's built-in list (root device /dev/sda1).
pub const AMI: &str = "ami-12c6146b";
/// Account id moto uses for everything created with the test credentials.
pub const ACCOUNT_ID: &str = "123456789012";

const HOW_TO_RUN: &str = "run the tests with `bash tests/run-all.sh`, which installs the EC2 \
                          emulator (moto) and faketime";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Safety net only: a hung binary fails the test instead of hanging it forever.
const EBSNAP_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Temporary directory (std only; removed on drop)

pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
        panic!(
            "cannot create a unique temp dir under {}",
            std::env::temp_dir().display()
        );
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// The emulator

pub struct Emulator {
    child: Child,
    /// The emulator exits when this pipe closes: on drop, and also when the test
    /// process dies without running destructors (SIGKILL, Ctrl-C).
    _lifeline: Option<ChildStdin>,
    port: u16,
    dir: TempDir,
    rt: tokio::runtime::Runtime,
    client: Client,
}

fn required_env_path(var: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: {HOW_TO_RUN}");
    });
    let path = PathBuf::from(value);
    if !path.exists() {
        panic!("{var}={} does not exist: {HOW_TO_RUN}", path.display());
    }
    path
}

/// moto 5.2.5's CreateSnapshots ignores `ExcludeDataVolumeIds` (it honours
/// `ExcludeBootVolume`): it would snapshot a volume ebsnap left out
/// (`ebsnap:skip`, `--min-interval`). This fix, in the emulator's process
/// only, leaves those volumes out as EC2 does.
macro_rules! exclude_data_volumes_fix {
    () => {
        "\
import moto.ec2.models.elastic_block_store as _ebs
_create_snapshots = _ebs.EBSBackend.create_snapshots
def _create_snapshots_excluding(self, instance_spec, description, tags):
    excluded = set(instance_spec.get('ExcludeDataVolumeIds') or [])
    if not excluded:
        return _create_snapshots(self, instance_spec, description, tags)
    instance = self.get_instance(instance_spec['InstanceId'])
    exclude_boot = str(instance_spec.get('ExcludeBootVolume', False)).lower() == 'true'
    volumes = [m.volume_id for k, m in instance.get_block_device_mapping
               if m.volume_id not in excluded and not (exclude_boot and k == instance.root_device_name)]
    snapshots = [self.create_snapshot(v, description=description) for v in volumes]
    for snapshot in snapshots:
        snapshot.add_tags(tags)
    return snapshots
_ebs.EBSBackend.create_snapshots = _create_snapshots_excluding
"
    };
}

/// Python run before moto's server: exits the process when stdin reaches EOF,
/// and applies EXCLUDE_DATA_VOLUMES_FIX.
const LIFELINE_WRAPPER: &str = concat!(
    "\
import os, runpy, sys, threading
threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
",
    exclude_data_volumes_fix!(),
    "\
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"
);

/// The command that runs moto's server script. When the script names a Python
/// interpreter (it does in the virtualenv), run it through LIFELINE_WRAPPER;
/// otherwise run the script as is.
fn moto_command(script: &Path, wrapper: &str) -> Command {
    let interpreter = fs::read_to_string(script).ok().and_then(|text| {
        let first = text.lines().next()?.strip_prefix("#!")?.trim().to_string();
        let path = PathBuf::from(&first);
        (first.contains("python") && path.is_file()).then_some(path)
    });
    match interpreter {
        Some(python) => {
            let mut cmd = Command::new(python);
            cmd.arg("-c").arg(wrapper).arg(script);
            cmd
        }
        None => Command::new(script),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Sends one HTTP/1.0 request to 127.0.0.1:port, returns (status, body).
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn xml_value<'a>(xml: &'a str, element: &str) -> Option<&'a str> {
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

impl Emulator {
    /// Starts a fresh emulator on a free port of 127.0.0.1 with its clock at +0.
    /// Panics (never skips) when the emulator or faketime is not installed.
    pub fn start() -> Emulator {
        Self::start_with(LIFELINE_WRAPPER)
    }

    /// Starts moto's server through `wrapper`, Python run in the server's
    /// process first (LIFELINE_WRAPPER, or IAM_WRAPPER with its fix).
    fn start_with(wrapper: &str) -> Emulator {
        let moto = required_env_path("EBSNAP_MOTO_SERVER");
        let faketime = required_env_path("EBSNAP_FAKETIME_LIB");
        let mut last_error = String::new();
        // The free port is released before moto binds it; in the rare case
        // another process takes it meanwhile, moto exits and we try again.
        for _attempt in 0..3 {
            let dir = TempDir::new("ebsnap-e2e");
            fs::write(dir.path().join("clock"), "+0\n").expect("write clock file");
            fs::create_dir(dir.path().join("home")).expect("create home dir");
            let port = free_port();
            let log = fs::File::create(dir.path().join("moto.log")).expect("create moto.log");
            let mut cmd = moto_command(&moto, wrapper);
            let mut child = cmd
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("LD_PRELOAD", &faketime)
                .env("FAKETIME_TIMESTAMP_FILE", dir.path().join("clock"))
                .env("FAKETIME_NO_CACHE", "1")
                // Timeouts inside the server keep working while its clock jumps.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .stdin(Stdio::piped())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}; {HOW_TO_RUN}", moto.display()));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let client = Client::from_conf(
                aws_sdk_ec2::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(REGION))
                    .endpoint_url(format!("http://127.0.0.1:{port}"))
                    .credentials_provider(Credentials::new("test", "test", None, None, "e2e"))
                    .build(),
            );
            let lifeline = child.stdin.take();
            let mut emu = Emulator {
                child,
                _lifeline: lifeline,
                port,
                dir,
                rt,
                client,
            };
            match emu.wait_ready() {
                Ok(()) => return emu,
                Err(e) => last_error = e,
            }
        }
        panic!("the EC2 emulator did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait moto") {
                return Err(format!(
                    "moto_server exited with {status} before answering on port {}; its log:\n{}",
                    self.port,
                    self.server_log()
                ));
            }
            if let Ok((status, _)) =
                http_request(self.port, "GET", "/", &[], "", Duration::from_secs(2))
            {
                if status < 500 {
                    // Make sure the server answering is ours, not a stranger on a reused port.
                    std::thread::sleep(Duration::from_millis(50));
                    if self.child.try_wait().expect("try_wait moto").is_none() {
                        return Ok(());
                    }
                    continue;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not answer HTTP on 127.0.0.1:{} within {:?}; its log:\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.server_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// The SDK client pointed at the emulator (test credentials, us-east-1).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An SDK client for another region of the same emulator.
    pub fn client_for(&self, region: &str) -> Client {
        Client::from_conf(
            self.client
                .config()
                .to_builder()
                .region(Region::new(region.to_string()))
                .build(),
        )
    }

    /// An SDK client of this emulator (us-east-1) working in another account:
    /// every request carries moto's `x-moto-account-id` header, so seeding
    /// and asserting in that account never goes through STS.
    pub fn client_in_account(&self, account: &str) -> Client {
        Client::from_conf(
            self.client
                .config()
                .to_builder()
                .interceptor(MotoAccount(account.to_string()))
                .build(),
        )
    }

    /// Runs one SDK future to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// Moves the emulator's clock: a libfaketime offset such as "-9d", "-228h", "+0".
    /// Takes effect on the emulator's next reading of the clock.
    pub fn set_clock_offset(&self, offset: &str) {
        let path = self.dir.path().join("clock");
        let tmp = self.dir.path().join("clock.tmp");
        fs::write(&tmp, format!("{offset}\n")).expect("write clock file");
        fs::rename(&tmp, &path).expect("replace clock file");
    }

    /// Runs `f` with the emulator's clock moved back by `hours`, then puts it back to +0
    /// (also when `f` panics).
    pub fn with_clock_back<T>(&self, hours: u32, f: impl FnOnce() -> T) -> T {
        struct Reset<'a>(&'a Emulator);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.set_clock_offset("+0");
            }
        }
        self.set_clock_offset(&format!("-{hours}h"));
        let _reset = Reset(self);
        f()
    }

    // -- raw HTTP: IAM and moto's control API ------------------------------

    /// Sends an IAM query-protocol action (unsigned; only while auth is not enforced).
    pub fn iam_action(&self, params: &[(&str, &str)]) -> String {
        let auth = "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let mut all = vec![("Version", "2010-05-08")];
        all.extend_from_slice(params);
        let (status, body) = http_request(
            self.port,
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", auth),
            ],
            &form_encode(&all),
            Duration::from_secs(30),
        )
        .expect("IAM request to the emulator");
        assert!(
            status < 300,
            "IAM {params:?} failed with HTTP {status}: {body}"
        );
        body
    }

    /// Creates an IAM user with one inline policy and returns its access key (id, secret).
    pub fn create_iam_user(&self, name: &str, policy_json: &str) -> (String, String) {
        self.iam_action(&[("Action", "CreateUser"), ("UserName", name)]);
        self.iam_action(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "e2e"),
            ("PolicyDocument", policy_json),
        ]);
        let body = self.iam_action(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        let id = xml_value(&body, "AccessKeyId").expect("AccessKeyId in CreateAccessKey answer");
        let secret =
            xml_value(&body, "SecretAccessKey").expect("SecretAccessKey in CreateAccessKey answer");
        (id.to_string(), secret.to_string())
    }

    /// From now on the emulator checks signatures and IAM policies of every request
    /// (the harness's own `test` credentials are then refused).
    pub fn enforce_iam(&self, on: bool) {
        let (status, body) = http_request(
            self.port,
            "POST",
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain")],
            if on { "0" } else { "inf" },
            Duration::from_secs(30),
        )
        .expect("moto-api reset-auth");
        assert_eq!(status, 200, "moto-api/reset-auth: {body}");
    }

    // -- seeding ------------------------------------------------------------

    /// Launches one instance of the built-in AMI with the given tags, returns its id.
    pub fn launch_instance(&self, tags: &[(&str, &str)]) -> String {
        let mut req = self
            .client
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .placement(Placement::builder().availability_zone(AZ).build());
        if !tags.is_empty() {
            req = req.tag_specifications(tag_spec(ResourceType::Instance, tags));
        }
        let out = self.block_on(req.send()).expect("RunInstances");
        out.instances()[0]
            .instance_id()
            .expect("instance id")
            .to_string()
    }

    pub fn describe_instance(&self, instance_id: &str) -> aws_sdk_ec2::types::Instance {
        let out = self
            .block_on(
                self.client
                    .describe_instances()
                    .instance_ids(instance_id)
                    .send(),
            )
            .expect("DescribeInstances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned()
            .unwrap_or_else(|| panic!("instance {instance_id} not found"))
    }

    /// The (device, volume id) of every volume attached to the instance, sorted by device.
    pub fn attached_volumes(&self, instance_id: &str) -> Vec<(String, String)> {
        let instance = self.describe_instance(instance_id);
        let mut volumes: Vec<(String, String)> = instance
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                Some((
                    m.device_name()?.to_string(),
                    m.ebs()?.volume_id()?.to_string(),
                ))
            })
            .collect();
        volumes.sort();
        volumes
    }

    /// The (device, volume id) of the instance's root volume.
    pub fn root_volume(&self, instance_id: &str) -> (String, String) {
        let instance = self.describe_instance(instance_id);
        let root = instance
            .root_device_name()
            .expect("root device name")
            .to_string();
        self.attached_volumes(instance_id)
            .into_iter()
            .find(|(device, _)| *device == root)
            .unwrap_or_else(|| panic!("no volume at root device {root} of {instance_id}"))
    }

    pub fn create_volume(&self, size_gib: i32) -> String {
        let out = self
            .block_on(
                self.client
                    .create_volume()
                    .availability_zone(AZ)
                    .size(size_gib)
                    .send(),
            )
            .expect("CreateVolume");
        out.volume_id().expect("volume id").to_string()
    }

    /// Creates a data volume and attaches it to the instance at `device`.
    pub fn attach_new_volume(&self, instance_id: &str, device: &str) -> String {
        let volume_id = self.create_volume(8);
        self.block_on(
            self.client
                .attach_volume()
                .volume_id(&volume_id)
                .instance_id(instance_id)
                .device(device)
                .send(),
        )
        .expect("AttachVolume");
        volume_id
    }

    pub fn delete_volume(&self, volume_id: &str) {
        self.block_on(self.client.delete_volume().volume_id(volume_id).send())
            .expect("DeleteVolume");
    }

    pub fn stop_instance(&self, instance_id: &str) {
        self.block_on(
            self.client
                .stop_instances()
                .instance_ids(instance_id)
                .send(),
        )
        .expect("StopInstances");
        let state = self.instance_state(instance_id);
        assert_eq!(
            state, "stopped",
            "instance {instance_id} after StopInstances"
        );
    }

    pub fn terminate_instance(&self, instance_id: &str) {
        self.block_on(
            self.client
                .terminate_instances()
                .instance_ids(instance_id)
                .send(),
        )
        .expect("TerminateInstances");
    }

    pub fn instance_state(&self, instance_id: &str) -> String {
        self.describe_instance(instance_id)
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    }

    /// Creates a snapshot of `volume_id` whose StartTime is `hours_ago` hours in the past,
    /// tagged in the create call. Returns its id.
    pub fn create_snapshot_aged(
        &self,
        volume_id: &str,
        hours_ago: u32,
        tags: &[(&str, &str)],
    ) -> String {
        let id = self.with_clock_back(hours_ago, || {
            let mut req = self
                .client
                .create_snapshot()
                .volume_id(volume_id)
                .description("seeded by the e2e tests");
            if !tags.is_empty() {
                req = req.tag_specifications(tag_spec(ResourceType::Snapshot, tags));
            }
            let out = self.block_on(req.send()).expect("CreateSnapshot");
            assert!(
                out.start_time().is_some(),
                "seeded snapshot without StartTime: {out:?}"
            );
            out.snapshot_id().expect("snapshot id").to_string()
        });
        id
    }

    pub fn create_tags(&self, resource_id: &str, tags: &[(&str, &str)]) {
        let mut req = self.client.create_tags().resources(resource_id);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(*k).value(*v).build());
        }
        self.block_on(req.send()).expect("CreateTags");
    }

    // -- asserting ----------------------------------------------------------

    /// Every snapshot the account owns (moto 5.2.5 ignores OwnerIds and returns all of
    /// them, including ~1,300 snapshots of its built-in AMIs).
    pub fn snapshot_state(&self) -> SnapshotState {
        self.snapshot_state_in(REGION)
    }

    /// `snapshot_state` of another region.
    pub fn snapshot_state_in(&self, region: &str) -> SnapshotState {
        let client = self.client_for(region);
        let out = self
            .block_on(client.describe_snapshots().owner_ids("self").send())
            .expect("DescribeSnapshots");
        assert!(
            out.next_token().is_none(),
            "the emulator paginated DescribeSnapshots; the harness does not expect it"
        );
        let snapshots = out
            .snapshots()
            .iter()
            .map(|s| {
                let info = SnapInfo {
                    id: s.snapshot_id().unwrap_or_default().to_string(),
                    volume_id: s.volume_id().unwrap_or_default().to_string(),
                    state: s
                        .state()
                        .map(|x| x.as_str().to_string())
                        .unwrap_or_default(),
                    start_time: s
                        .start_time()
                        .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
                        .unwrap_or_default(),
                    start_secs: s.start_time().map(|t| t.secs()).unwrap_or_default(),
                    description: s.description().unwrap_or_default().to_string(),
                    tags: tag_map(s.tags()),
                };
                (info.id.clone(), info)
            })
            .collect();
        SnapshotState { snapshots }
    }

    pub fn snapshot(&self, snapshot_id: &str) -> SnapInfo {
        self.snapshot_state()
            .get(snapshot_id)
            .cloned()
            .unwrap_or_else(|| panic!("snapshot {snapshot_id} not found"))
    }

    /// Snapshots, volumes and instances: for "nothing changed" assertions.
    pub fn world_state(&self) -> WorldState {
        let volumes_out = self
            .block_on(self.client.describe_volumes().send())
            .expect("DescribeVolumes");
        let volumes = volumes_out
            .volumes()
            .iter()
            .map(|v| {
                let attachments: Vec<String> = v
                    .attachments()
                    .iter()
                    .map(|a| {
                        format!(
                            "{} {} {}",
                            a.instance_id().unwrap_or_default(),
                            a.device().unwrap_or_default(),
                            a.state().map(|s| s.as_str()).unwrap_or_default()
                        )
                    })
                    .collect();
                (
                    v.volume_id().unwrap_or_default().to_string(),
                    format!(
                        "{} {:?} {:?}",
                        v.state().map(|s| s.as_str()).unwrap_or_default(),
                        attachments,
                        tag_map(v.tags())
                    ),
                )
            })
            .collect();
        let instances_out = self
            .block_on(self.client.describe_instances().send())
            .expect("DescribeInstances");
        let instances = instances_out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    format!(
                        "{} {:?}",
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str())
                            .unwrap_or_default(),
                        tag_map(i.tags())
                    ),
                )
            })
            .collect();
        WorldState {
            snapshots: self.snapshot_state(),
            volumes,
            instances,
        }
    }

    // -- the binary ---------------------------------------------------------

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

/// Sends moto's `x-moto-account-id` header with every request.
#[derive(Debug)]
struct MotoAccount(String);

impl aws_sdk_ec2::config::Intercept for MotoAccount {
    fn name(&self) -> &'static str {
        "MotoAccount"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_ec2::config::RuntimeComponents,
        _config: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tag_spec(resource: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    spec.build()
}

pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

// ---------------------------------------------------------------------------
// State snapshots for assertions

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapInfo {
    pub id: String,
    pub volume_id: String,
    pub state: String,
    /// RFC 3339
    pub start_time: String,
    pub start_secs: i64,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

impl SnapInfo {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotState {
    pub snapshots: BTreeMap<String, SnapInfo>,
}

impl SnapshotState {
    pub fn get(&self, id: &str) -> Option<&SnapInfo> {
        self.snapshots.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.snapshots.contains_key(id)
    }

    pub fn ids(&self) -> BTreeSet<String> {
        self.snapshots.keys().cloned().collect()
    }

    pub fn of_volume(&self, volume_id: &str) -> Vec<&SnapInfo> {
        self.snapshots
            .values()
            .filter(|s| s.volume_id == volume_id)
            .collect()
    }

    /// What changed from `self` (before) to `after`.
    pub fn diff(&self, after: &SnapshotState) -> SnapshotDiff {
        let added = after
            .snapshots
            .values()
            .filter(|s| !self.contains(&s.id))
            .cloned()
            .collect();
        let removed = self
            .snapshots
            .values()
            .filter(|s| !after.contains(&s.id))
            .cloned()
            .collect();
        let changed = self
            .snapshots
            .values()
            .filter_map(|s| {
                let a = after.get(&s.id)?;
                (a != s).then(|| (s.clone(), a.clone()))
            })
            .collect();
        SnapshotDiff {
            added,
            removed,
            changed,
        }
    }
}

#[derive(Debug)]
pub struct SnapshotDiff {
    pub added: Vec<SnapInfo>,
    pub removed: Vec<SnapInfo>,
    pub changed: Vec<(SnapInfo, SnapInfo)>,
}

impl SnapshotDiff {
    pub fn added_ids(&self) -> BTreeSet<String> {
        self.added.iter().map(|s| s.id.clone()).collect()
    }

    pub fn removed_ids(&self) -> BTreeSet<String> {
        self.removed.iter().map(|s| s.id.clone()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldState {
    pub snapshots: SnapshotState,
    pub volumes: BTreeMap<String, String>,
    pub instances: BTreeMap<String, String>,
}

/// Asserts two world states are equal, printing only what differs.
pub fn assert_world_unchanged(before: &WorldState, after: &WorldState, context: &dyn fmt::Display) {
    if before == after {
        return;
    }
    let diff = before.snapshots.diff(&after.snapshots);
    let mut msg = "the emulator's state changed\n".to_string();
    for s in &diff.added {
        msg.push_str(&format!("  snapshot added:   {s:?}\n"));
    }
    for s in &diff.removed {
        msg.push_str(&format!("  snapshot removed: {s:?}\n"));
    }
    for (b, a) in &diff.changed {
        msg.push_str(&format!(
            "  snapshot changed: {b:?}\n                 -> {a:?}\n"
        ));
    }
    for (label, b, a) in [
        ("volume", &before.volumes, &after.volumes),
        ("instance", &before.instances, &after.instances),
    ] {
        for key in b.keys().chain(a.keys()).collect::<BTreeSet<_>>() {
            if b.get(key) != a.get(key) {
                msg.push_str(&format!(
                    "  {label} {key}: {:?} -> {:?}\n",
                    b.get(key),
                    a.get(key)
                ));
            }
        }
    }
    panic!("{msg}{context}");
}

// ---------------------------------------------------------------------------
// Running the binary

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

// ---------------------------------------------------------------------------
// Running the binary in the background (for tests that signal or race it)

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

    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait ebsnap").is_some()
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

/// The EC2 twin: consistency window, slow creates, snapshot states and limits.
pub mod twin;

// ---------------------------------------------------------------------------
// A fault-injecting HTTP proxy between the binary and the emulator
//
// The binary talks to the proxy (`EbsnapCommand::via`), the harness's own client
// keeps talking to the emulator. The proxy forwards every request; per its
// FaultPlan it answers some mutating calls with an EC2 error instead, and it
// records every request it saw.

/// The EC2 twin's IAM: every EC2 request judged against a policy as EC2
/// judges it (`FaultPlan::iam_policy`).
pub mod iam;

/// The EC2 actions that change the account: the only ones the proxy faults,
/// delays or holds (and never when sent with `DryRun=true`).
pub const MUTATING_ACTIONS: &[&str] = &[
    "CreateSnapshot",
    "CreateSnapshots",
    "DeleteSnapshot",
    "CreateTags",
    "CreateVolume",
    "AttachVolume",
];

/// Safety net for one request to the emulator.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 `RequestLimitExceeded`; the request is not forwarded.
    Throttle,
    /// The request is forwarded (it takes effect), then answered with HTTP 500
    /// `InternalError` instead of the emulator's answer.
    LostAnswer,
    /// HTTP 400 with this EC2 error code; the request is not forwarded.
    Refuse(String),
    /// The request is forwarded (it takes effect), then the connection is
    /// closed without an answer.
    Reset,
}

#[derive(Clone, Debug)]
struct RandomFaults {
    seed: u64,
    throttle_per_mille: u64,
    lost_per_mille: u64,
}

#[derive(Clone, Debug)]
struct FirstAttempts {
    action: String,
    /// Only this resource (volume id, snapshot id, ...); None: every resource.
    resource: Option<String>,
    fault: Fault,
    count: usize,
}

/// What the proxy does to the mutating calls it sees. Deterministic: the same
/// sequence of calls gets the same faults.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    random: Option<RandomFaults>,
    first_attempts: Vec<FirstAttempts>,
    max_faults_per_key: Option<usize>,
    delay: Duration,
    gate_after: Option<usize>,
    /// Roles whose AssumeRole the proxy refuses (STS `AccessDenied`).
    denied_roles: Vec<String>,
    failing_regions: Vec<String>,
    /// The IAM twin's policy and partition (tests/support/iam.rs).
    iam: iam::IamTwin,
    /// What the EC2 twin adds (tests/support/twin.rs).
    twin: twin::TwinPlan,
}

impl FaultPlan {
    /// Forwards everything untouched.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Faults mutating calls at random from a seeded generator (xorshift64*):
    /// each call is throttled with probability `throttle`, its answer lost with
    /// probability `lost`.
    pub fn random(mut self, seed: u64, throttle: f64, lost: f64) -> FaultPlan {
        self.random = Some(RandomFaults {
            seed,
            throttle_per_mille: (throttle * 1000.0).round() as u64,
            lost_per_mille: (lost * 1000.0).round() as u64,
        });
        self
    }

    /// The random faults hit one call (action and resource) at most `n` times,
    /// so a client that retries a few times always gets through.
    pub fn max_faults_per_key(mut self, n: usize) -> FaultPlan {
        self.max_faults_per_key = Some(n);
        self
    }

    /// The first `count` calls of `action` for each resource (volume, snapshot)
    /// get `fault`.
    pub fn first_attempts(mut self, action: &str, fault: Fault, count: usize) -> FaultPlan {
        self.first_attempts.push(FirstAttempts {
            action: action.to_string(),
            resource: None,
            fault,
            count,
        });
        self
    }

    /// The first `count` calls of `action` on `resource` get `fault`.
    pub fn first_attempts_on(
        mut self,
        action: &str,
        resource: &str,
        fault: Fault,
        count: usize,
    ) -> FaultPlan {
        self.first_attempts.push(FirstAttempts {
            action: action.to_string(),
            resource: Some(resource.to_string()),
            fault,
            count,
        });
        self
    }

    /// Every STS AssumeRole of `role_arn` is refused with `AccessDenied`, as
    /// STS refuses a role whose trust policy does not name the caller (moto
    /// lets anyone assume any role).
    pub fn deny_assume_role(mut self, role_arn: &str) -> FaultPlan {
        self.denied_roles.push(role_arn.to_string());
        self
    }

    /// Every call signed for `region` gets a 500 InternalError, as from a
    /// region whose endpoint is down; other regions pass.
    pub fn fail_region(mut self, region: &str) -> FaultPlan {
        self.failing_regions.push(region.to_string());
        self
    }

    /// Every mutating call waits this long before the proxy handles it.
    pub fn delay(mut self, delay: Duration) -> FaultPlan {
        self.delay = delay;
        self
    }

    /// The first `n` mutating calls pass; every later one is held, before it is
    /// forwarded, until `FaultProxy::release` (0: hold them all).
    pub fn gate_after(mut self, n: usize) -> FaultPlan {
        self.gate_after = Some(n);
        self
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct ProxyRecord {
    /// Order of arrival, from 0.
    pub seq: usize,
    /// The EC2 `Action` ("" when there was none).
    pub action: String,
    /// The request's form parameters (body and query string), decoded.
    pub params: BTreeMap<String, String>,
    /// The resource the call is about (volume id for creates, snapshot id for
    /// deletes, ...), when it names one.
    pub resource: Option<String>,
    pub dry_run: bool,
    /// One of MUTATING_ACTIONS (with or without DryRun).
    pub mutating: bool,
    pub fault: Option<Fault>,
    /// Held at the gate right now.
    pub held: bool,
    /// The request reached the emulator.
    pub forwarded: bool,
    /// The status answered to the client; None until answered (or when the
    /// connection was dropped).
    pub status: Option<u16>,
    pub received: Instant,
    /// Each authorization the IAM twin judged ("ec2:X on ARN"; empty when
    /// no policy is set or the request is not EC2's).
    pub judged: Vec<String>,
    /// The authorization the IAM twin refused ("ec2:X on ARN"): the request
    /// was answered 403 UnauthorizedOperation and never forwarded.
    pub denied: Option<String>,
    /// What the EC2 twin did with the request (tests/support/twin.rs), e.g.
    /// "refused: InvalidSnapshot.NotFound snap-… (consistency window)".
    pub twin: Option<String>,
}

impl ProxyRecord {
    /// A mutating call sent for real (not `DryRun=true`).
    pub fn is_real_mutation(&self) -> bool {
        self.mutating && !self.dry_run
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The `Name=Value` pairs of the request's `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, name) in &self.params {
            let Some(n) = k
                .strip_prefix("Filter.")
                .and_then(|r| r.strip_suffix(".Name"))
            else {
                continue;
            };
            let prefix = format!("Filter.{n}.Value.");
            let values = self
                .params
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            out.insert(name.clone(), values);
        }
        out
    }
}

impl fmt::Display for ProxyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {}{} {}",
            self.seq,
            self.action,
            if self.dry_run { " (DryRun)" } else { "" },
            self.resource.as_deref().unwrap_or("-")
        )?;
        if let Some(fault) = &self.fault {
            write!(f, " fault={fault:?}")?;
        }
        if self.held {
            write!(f, " held")?;
        }
        if let Some(denied) = &self.denied {
            write!(f, " denied=[{denied}]")?;
        }
        if let Some(twin) = &self.twin {
            write!(f, " twin=[{twin}]")?;
        }
        write!(
            f,
            " forwarded={} status={}",
            self.forwarded,
            self.status.map_or("-".to_string(), |s| s.to_string())
        )
    }
}

struct ProxyState {
    records: Vec<ProxyRecord>,
    rng: u64,
    mutating_seen: usize,
    calls_per_key: BTreeMap<String, usize>,
    faults_per_key: BTreeMap<String, usize>,
    released: bool,
    forward_held: bool,
}

struct ProxyShared {
    upstream_port: u16,
    plan: FaultPlan,
    state: Mutex<ProxyState>,
    changed: Condvar,
    stop: AtomicBool,
    twin: twin::TwinState,
}

/// The fault-injecting proxy: listens on 127.0.0.1:<free port>, forwards to the
/// emulator at 127.0.0.1:<upstream port>. Stops on drop.
pub struct FaultProxy {
    port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16, plan: FaultPlan) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let seed = plan.random.as_ref().map_or(1, |r| r.seed);
        let shared = Arc::new(ProxyShared {
            upstream_port,
            state: Mutex::new(ProxyState {
                records: Vec::new(),
                // xorshift must not start at 0.
                rng: seed ^ 0x9E37_79B9_7F4A_7C15,
                mutating_seen: 0,
                calls_per_key: BTreeMap::new(),
                faults_per_key: BTreeMap::new(),
                released: false,
                forward_held: true,
            }),
            plan,
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            twin: twin::TwinState::default(),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                std::thread::spawn(move || serve_connection(&conn_shared, stream));
            }
        });
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request seen so far, in order of arrival.
    pub fn records(&self) -> Vec<ProxyRecord> {
        self.shared.state.lock().unwrap().records.clone()
    }

    /// The mutating calls sent for real (not DryRun).
    pub fn real_mutations(&self) -> Vec<ProxyRecord> {
        self.records()
            .into_iter()
            .filter(ProxyRecord::is_real_mutation)
            .collect()
    }

    /// Real (not DryRun) calls of `action` seen so far.
    pub fn count(&self, action: &str) -> usize {
        self.records()
            .iter()
            .filter(|r| r.action == action && !r.dry_run)
            .count()
    }

    /// Real calls of `action` that reached the emulator.
    pub fn forwarded(&self, action: &str) -> usize {
        self.records()
            .iter()
            .filter(|r| r.action == action && !r.dry_run && r.forwarded)
            .count()
    }

    /// Every request the IAM twin refused (`FaultPlan::iam_policy`), one
    /// line each.
    pub fn denials(&self) -> Vec<String> {
        self.records()
            .iter()
            .filter(|r| r.denied.is_some())
            .map(ProxyRecord::to_string)
            .collect()
    }

    /// No request was refused by the IAM twin: what was run works under
    /// the policy it was given.
    pub fn assert_no_denials(&self, context: &dyn fmt::Display) {
        let denied = self.denials();
        assert!(
            denied.is_empty(),
            "denied under the policy: {denied:#?}\n{context}"
        );
    }

    /// How many requests got `fault`.
    pub fn faulted(&self, fault: &Fault) -> usize {
        self.records()
            .iter()
            .filter(|r| r.fault.as_ref() == Some(fault))
            .count()
    }

    /// Requests held at the gate right now.
    pub fn held(&self) -> usize {
        self.records().iter().filter(|r| r.held).count()
    }

    /// Opens the gate: the held calls go on to the emulator when `forward`,
    /// else they are dropped (never forwarded, connection closed). Later calls
    /// are not held.
    pub fn release(&self, forward: bool) {
        let mut state = self.shared.state.lock().unwrap();
        state.released = true;
        state.forward_held = forward;
        self.shared.changed.notify_all();
    }

    /// Waits until `cond` holds for the records (a safety-net timeout, then
    /// panics with what the proxy saw).
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&[ProxyRecord]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if cond(&state.records) {
                return;
            }
            let now = Instant::now();
            if now > deadline {
                let seen = state.records.clone();
                drop(state);
                panic!(
                    "the proxy did not see {what} within {timeout:?}; it saw:\n{}",
                    describe_records(&seen)
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, (deadline - now).min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
    }

    /// Every request seen, one per line (for assertion messages).
    pub fn log(&self) -> String {
        describe_records(&self.records())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release(false);
        // Wake the acceptor so it sees `stop`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

pub fn describe_records(records: &[ProxyRecord]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&format!("  {r}\n"));
    }
    if out.is_empty() {
        out.push_str("  (nothing)\n");
    }
    out
}

struct HttpRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "content-length",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Reads one CRLF- (or LF-) terminated line; None at EOF before any byte.
fn read_line(reader: &mut impl std::io::BufRead) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > 64 * 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "header line too long",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_headers(reader: &mut impl std::io::BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF in headers")
        })?;
        if line.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Reads a body framed by the headers (chunked or Content-Length); None: until EOF.
fn read_body(
    reader: &mut impl std::io::BufRead,
    headers: &[(String, String)],
    until_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(reader)?.unwrap_or_default();
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if size == 0 {
                // Trailers, up to the empty line.
                while let Some(line) = read_line(reader)? {
                    if line.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            read_line(reader)?;
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad Content-Length")
        })?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Reads the next request of a keep-alive connection; None when the client closed it.
fn read_request(
    reader: &mut impl std::io::BufRead,
    writer: &mut TcpStream,
) -> std::io::Result<Option<HttpRequest>> {
    let request_line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let version = version.unwrap_or("HTTP/1.0");
    let headers = read_headers(reader)?;
    if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(reader, &headers, false)?;
    let connection = header(&headers, "connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    Ok(Some(HttpRequest {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
        keep_alive,
    }))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && hex(bytes[i + 1]).is_some()
                && hex(bytes[i + 2]).is_some() =>
            {
                out.push((hex(bytes[i + 1]).unwrap() * 16 + hex(bytes[i + 2]).unwrap()) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(text: &str, into: &mut BTreeMap<String, String>) {
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        into.insert(percent_decode(k), percent_decode(v));
    }
}

/// The resource a mutating call is about, for per-resource fault rules.
fn resource_of(action: &str, params: &BTreeMap<String, String>) -> Option<String> {
    let key = match action {
        "CreateSnapshot" | "AttachVolume" => "VolumeId",
        "DeleteSnapshot" => "SnapshotId",
        "CreateTags" => "ResourceId.1",
        "CreateSnapshots" => "InstanceSpecification.InstanceId",
        "CreateVolume" => "SnapshotId",
        _ => "VolumeId",
    };
    params.get(key).cloned()
}

/// An HTTP response with an EC2 XML error body.
fn ec2_error_response(status: u16, code: &str, message: &str, request_id: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
    );
    http_response(
        status,
        reason,
        &[("Content-Type".into(), "text/xml;charset=UTF-8".into())],
        body.as_bytes(),
        true,
    )
}

/// An HTTP response with an STS (query protocol) XML error body.
fn sts_error_response(status: u16, code: &str, message: &str, request_id: &str) -> Vec<u8> {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    );
    http_response(
        status,
        "Forbidden",
        &[("Content-Type".into(), "text/xml".into())],
        body.as_bytes(),
        true,
    )
}

fn http_response(
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers.iter().filter(|(k, _)| !is_hop_by_hop(k)) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An emulator's answer: status, reason, headers, body.
type UpstreamAnswer = (u16, String, Vec<(String, String)>, Vec<u8>);

/// Sends the request to the emulator on a fresh connection.
fn forward_upstream(port: u16, req: &HttpRequest) -> std::io::Result<UpstreamAnswer> {
    let mut upstream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    upstream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    upstream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (k, v) in req.headers.iter().filter(|(k, _)| !is_hop_by_hop(k)) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        req.body.len()
    ));
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&req.body)?;
    let mut reader = std::io::BufReader::new(upstream);
    let status_line = read_line(&mut reader)?.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no answer upstream")
    })?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status line"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let headers = read_headers(&mut reader)?;
    let body = read_body(&mut reader, &headers, true)?;
    Ok((status, reason, headers, body))
}

impl ProxyShared {
    fn update(&self, seq: usize, f: impl FnOnce(&mut ProxyRecord)) {
        let mut state = self.state.lock().unwrap();
        f(&mut state.records[seq]);
        self.changed.notify_all();
    }

    /// Handles one request; None: close the connection without an answer.
    fn handle(&self, req: &HttpRequest) -> Option<Vec<u8>> {
        // SigV4: Credential=KEY/DATE/REGION/SERVICE/aws4_request.
        let signed_region = header(&req.headers, "authorization")
            .and_then(|auth| auth.split("Credential=").nth(1))
            .and_then(|scope| scope.split('/').nth(2));
        if let Some(region) =
            signed_region.filter(|r| self.plan.failing_regions.iter().any(|f| f == r))
        {
            let message = format!("{region} is down (test proxy)");
            return Some(ec2_error_response(
                500,
                "InternalError",
                &message,
                "fault-region",
            ));
        }
        let mut params = BTreeMap::new();
        if let Some((_, query)) = req.target.split_once('?') {
            parse_form(query, &mut params);
        }
        parse_form(&String::from_utf8_lossy(&req.body), &mut params);
        let action = params.get("Action").cloned().unwrap_or_default();
        let dry_run = params
            .get("DryRun")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mutating = MUTATING_ACTIONS.contains(&action.as_str());
        let resource = resource_of(&action, &params);
        let real = mutating && !dry_run;
        // IAM as EC2 evaluates it (tests/support/iam.rs), before any fault: a
        // denied request goes no further.
        let iam = self.judge_iam(req, &params, &action);

        let (seq, fault, gated) = {
            let mut state = self.state.lock().unwrap();
            let seq = state.records.len();
            let mut fault = None;
            let mut gated = false;
            if real && iam.denial.is_none() {
                let n = state.mutating_seen;
                state.mutating_seen += 1;
                let key = format!("{action} {}", resource.as_deref().unwrap_or("-"));
                let calls = state.calls_per_key.get(&key).copied().unwrap_or(0);
                for rule in &self.plan.first_attempts {
                    if rule.action == action
                        && rule
                            .resource
                            .as_ref()
                            .is_none_or(|r| Some(r) == resource.as_ref())
                        && calls < rule.count
                    {
                        fault = Some(rule.fault.clone());
                        break;
                    }
                }
                if let Some(random) = &self.plan.random {
                    // Always draw, so each call's fate depends only on its position.
                    let mut x = state.rng;
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    state.rng = x;
                    let roll = x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000;
                    let faults = state.faults_per_key.get(&key).copied().unwrap_or(0);
                    let allowed = self.plan.max_faults_per_key.is_none_or(|m| faults < m);
                    if fault.is_none() && allowed {
                        if roll < random.throttle_per_mille {
                            fault = Some(Fault::Throttle);
                        } else if roll < random.throttle_per_mille + random.lost_per_mille {
                            fault = Some(Fault::LostAnswer);
                        }
                    }
                }
                if fault.is_some() {
                    *state.faults_per_key.entry(key.clone()).or_insert(0) += 1;
                }
                *state.calls_per_key.entry(key).or_insert(0) += 1;
                gated = self.plan.gate_after.is_some_and(|g| n >= g) && !state.released;
            }
            state.records.push(ProxyRecord {
                seq,
                action: action.clone(),
                params,
                resource,
                dry_run,
                mutating,
                fault: fault.clone(),
                held: gated,
                forwarded: false,
                status: None,
                received: Instant::now(),
                judged: iam.judged,
                denied: iam.denial.as_ref().map(|d| d.what.clone()),
                twin: None,
            });
            self.changed.notify_all();
            (seq, fault, gated)
        };

        if let Some(denial) = &iam.denial {
            self.update(seq, |r| r.status = Some(403));
            return Some(denial.response(&format!("iam-{seq}"), req.keep_alive));
        }
        if real && !self.plan.delay.is_zero() {
            std::thread::sleep(self.plan.delay);
        }
        if gated {
            let mut state = self.state.lock().unwrap();
            while !state.released && !self.stop.load(Ordering::SeqCst) {
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
            let forward = state.forward_held && !self.stop.load(Ordering::SeqCst);
            state.records[seq].held = false;
            self.changed.notify_all();
            if !forward {
                return None;
            }
        }

        let request_id = format!("fault-{seq}");
        if action == "AssumeRole" {
            let record = self.state.lock().unwrap().records[seq].clone();
            if let Some(role) = record
                .param("RoleArn")
                .filter(|role| self.plan.denied_roles.iter().any(|r| r == role))
            {
                let message = format!("User: arn:aws:iam::123456789012:user/test is not authorized to perform: sts:AssumeRole on resource: {role}");
                self.update(seq, |r| {
                    r.fault = Some(Fault::Refuse("AccessDenied".into()));
                    r.status = Some(403);
                });
                return Some(sts_error_response(
                    403,
                    "AccessDenied",
                    &message,
                    &request_id,
                ));
            }
        }
        if let Some(answer) = self.twin_before(seq, req, &fault) {
            return answer;
        }
        let answer = match &fault {
            Some(Fault::Throttle) => (
                503,
                ec2_error_response(
                    503,
                    "RequestLimitExceeded",
                    "Request limit exceeded.",
                    &request_id,
                ),
            ),
            Some(Fault::Refuse(code)) => (
                400,
                ec2_error_response(400, code, "Refused by the test proxy.", &request_id),
            ),
            Some(Fault::Reset) => {
                let forwarded = self.twin_forward(seq, req).is_ok();
                self.update(seq, |r| r.forwarded = forwarded);
                return None;
            }
            Some(Fault::LostAnswer) => {
                let forwarded = self.twin_forward(seq, req).is_ok();
                self.update(seq, |r| r.forwarded = forwarded);
                (
                    500,
                    ec2_error_response(
                        500,
                        "InternalError",
                        "An internal error has occurred.",
                        &request_id,
                    ),
                )
            }
            None => match self.twin_forward(seq, req) {
                Ok((status, reason, headers, body)) => {
                    self.update(seq, |r| r.forwarded = true);
                    (
                        status,
                        http_response(status, &reason, &headers, &body, req.keep_alive),
                    )
                }
                Err(e) => (
                    502,
                    http_response(
                        502,
                        "Bad Gateway",
                        &[("Content-Type".into(), "text/plain".into())],
                        format!("the test proxy could not reach the emulator: {e}").as_bytes(),
                        req.keep_alive,
                    ),
                ),
            },
        };
        self.update(seq, |r| r.status = Some(answer.0));
        Some(answer.1)
    }
}

fn serve_connection(shared: &ProxyShared, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(read_half);
    let mut writer = client;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(request)) => request,
            _ => return,
        };
        let Some(answer) = shared.handle(&request) else {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        };
        if writer.write_all(&answer).is_err() || !request.keep_alive {
            return;
        }
    }
}

impl Emulator {
    /// The binary's XDG_RUNTIME_DIR (where its default lock files go).
    pub fn runtime_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fault-injecting proxy in front of this emulator.
    pub fn proxy(&self, plan: FaultPlan) -> FaultProxy {
        FaultProxy::start(self.port, plan)
    }
}

// ---------------------------------------------------------------------------
// IAM enforcement that accepts the AWS SDK for Rust's signatures

/// Python run in the emulator's process before moto's server, for
/// `Emulator::start_for_iam` only: the lifeline of LIFELINE_WRAPPER, plus one
/// fix to moto 5.2.5's signature check.
///
/// Under IAM enforcement moto recomputes each request's SigV4 signature over
/// a body it rebuilds from the decoded form fields (werkzeug has consumed the
/// raw body by then), and botocore rebuilds it with `+` for a space, while the
/// AWS SDK for Rust sent and signed `%20`. So every request with a space in a
/// value (ebsnap's CreateSnapshot: its description and Name tag) fails with
/// AuthFailure whatever the policy says. The fix rebuilds the body the way the
/// SDK encodes it (aws-smithy-query: RFC 3986, only `A-Za-z0-9-_.~` left
/// bare, which is Python's `quote(safe='')`), in the order the fields came.
/// Only the signature check sees the rebuilt body; nothing else in moto
/// changes, and the patch lives only in this emulator's process.
const IAM_WRAPPER: &str = concat!(
    "\
import os, runpy, sys, threading
threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
",
    exclude_data_volumes_fix!(),
    "\
from urllib.parse import quote, urlencode
from moto.iam.access_control import IAMRequestBase
_create_aws_request = IAMRequestBase._create_aws_request
def _sdk_encoded_body(self):
    if not self._body and isinstance(self._data, dict):
        self._body = urlencode(self._data, doseq=True, quote_via=quote).encode()
    return _create_aws_request(self)
IAMRequestBase._create_aws_request = _sdk_encoded_body
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"
);

impl Emulator {
    /// Like `Emulator::start`, with moto's signature check fixed for the AWS SDK
    /// for Rust (see IAM_WRAPPER): for tests that run ebsnap under
    /// `enforce_iam(true)` and need its creates to be judged by the policy.
    pub fn start_for_iam() -> Emulator {
        Self::start_with(IAM_WRAPPER)
    }

    /// An SDK client of this emulator signing with other credentials (an IAM
    /// user's), for probing what the emulator allows under `enforce_iam(true)`.
    pub fn client_with_keys(&self, key: &str, secret: &str) -> Client {
        Client::from_conf(
            self.client
                .config()
                .to_builder()
                .credentials_provider(Credentials::new(key, secret, None, None, "iam-user"))
                .build(),
        )
    }
}

// ---------------------------------------------------------------------------
// The binary as cron runs it

/// The `ec2_metadata_service_endpoint` line of a test's `~/.aws/config`: the
/// binary under `env -i` cannot be given AWS_EC2_METADATA_DISABLED, so should
/// the SDK ever look for an instance role or region, it asks a port of
/// 127.0.0.1 nothing listens on, never 169.254.169.254.
pub fn imds_nowhere_line() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local_addr").port();
    format!("ec2_metadata_service_endpoint = http://127.0.0.1:{port}\n")
}

/// Writes `~/.aws/config` and `~/.aws/credentials` under `home`: a default
/// profile with region us-east-1, the emulator as its `endpoint_url`, and these
/// keys (and the instance metadata service pointed nowhere, see
/// `imds_nowhere_line`).
pub fn write_aws_profile(home: &Path, endpoint_url: &str, key: &str, secret: &str) {
    let aws = home.join(".aws");
    fs::create_dir_all(&aws).expect("create ~/.aws");
    fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = {REGION}\nendpoint_url = {endpoint_url}\n{}",
            imds_nowhere_line()
        ),
    )
    .expect("write ~/.aws/config");
    fs::write(
        aws.join("credentials"),
        format!("[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .expect("write ~/.aws/credentials");
}

/// Runs `ebsnap ARGS` the way cron does: `env -i PATH=/usr/bin:/bin HOME=home`
/// (nothing else in the environment), standard input closed (`<&-`, not even
/// /dev/null), stdout and stderr pipes (no terminal).
pub fn ebsnap_in_cron_env(home: &Path, args: &[&str]) -> EbsnapRun {
    let home_var = format!("HOME={}", home.display());
    let mut cmd = Command::new("/usr/bin/env");
    cmd.args(["-i", "PATH=/usr/bin:/bin", &home_var])
        .args(["/bin/sh", "-c", "exec \"$0\" \"$@\" <&-"])
        .arg(env!("CARGO_BIN_EXE_ebsnap"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn env -i ebsnap");
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + EBSNAP_TIMEOUT;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ebsnap") {
            break status;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for killed ebsnap");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = EbsnapRun {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["(env -i)".into(), "PATH=/usr/bin:/bin".into(), home_var],
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
    };
    if timed_out {
        panic!("ebsnap did not finish within {EBSNAP_TIMEOUT:?}, killed\n{run}");
    }
    run
}

/// Runs `ebsnap ARGS` against the emulator (test credentials, as `ebsnap_cmd`)
/// with its standard streams on a pseudo-terminal, through script(1) from
/// util-linux: what a person at a terminal sees, stdout and stderr together.
pub fn ebsnap_on_a_terminal(
    emu: &Emulator,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> EbsnapRun {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(env!("CARGO_BIN_EXE_ebsnap"));
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let home = emu.dir.path().join("home");
    let runtime_dir = emu.dir.path().display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("HOME".into(), home.display().to_string()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TZ".into(), "UTC".into()),
        ("TERM".into(), "xterm".into()),
        ("AWS_ENDPOINT_URL".into(), emu.endpoint_url()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("XDG_RUNTIME_DIR".into(), runtime_dir),
    ];
    for (k, v) in extra_env {
        env.push((k.to_string(), v.to_string()));
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run script(1) (util-linux) for a pseudo-terminal");
    EbsnapRun {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Ages (hours) of seeded snapshots around the default 7-day retention, with
/// 12 h margins on each side of the line, so no test depends on timing.
pub mod ages {
    pub const H_0_5D: u32 = 12;
    pub const H_1_5D: u32 = 36;
    pub const H_2_5D: u32 = 60;
    pub const H_6_5D: u32 = 156;
    pub const H_7_5D: u32 = 180;
    pub const H_8_5D: u32 = 204;
    pub const H_9_5D: u32 = 228;
    /// The default retention (7 days) in hours.
    pub const RETENTION_H: u32 = 168;
}

/// The policy `ebsnap iam-policy` prints for the default job, as printed:
/// asked of the binary once per test binary.
pub fn printed_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_ebsnap"))
            .arg("iam-policy")
            .output()
            .expect("run ebsnap iam-policy");
        assert!(out.status.success(), "ebsnap iam-policy: {out:?}");
        String::from_utf8(out.stdout).expect("the policy is UTF-8")
    })
}

impl FaultPlan {
    /// IAM as EC2 evaluates it (`iam_policy`), under the policy
    /// `ebsnap iam-policy` prints, unchanged: what users are told to grant.
    pub fn under_printed_policy(self) -> FaultPlan {
        self.iam_policy(printed_policy())
    }
}

/// The tags ebsnap puts on a job's snapshot, for seeding one by hand. Each
/// run has its own id: two snapshots of one volume with one run id are a
/// duplicate, which purge deletes (safety rule 7).
pub fn job_tags<'a>(
    job: &'a str,
    instance_id: &'a str,
    device: &'a str,
    run_id: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ebsnap:job", job),
        ("ebsnap:instance-id", instance_id),
        ("ebsnap:device", device),
        ("ebsnap:run-id", run_id),
    ]
}

/// The run id of a seeded snapshot of `hours_ago`: one run a seeded age.
pub fn seeded_run_id(hours_ago: u32) -> String {
    format!("seeded-{hours_ago}h")
}
