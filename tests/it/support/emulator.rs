//! The emulator: moto's server on 127.0.0.1 with a movable clock, and an SDK
//! client pointed at it for seeding and asserting.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::primitives::DateTimeFormat;
use aws_sdk_ec2::types::{Filter, InstanceType, Placement, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

use super::{
    SnapInfo, SnapshotState, TempDir, WorldState, ACCOUNT_ID, AMI, AZ, HOW_TO_RUN, REGION,
};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Emulator {
    child: Child,
    /// The emulator exits when this pipe closes: on drop, and also when the test
    /// process dies without running destructors (SIGKILL, Ctrl-C).
    _lifeline: Option<ChildStdin>,
    pub(super) port: u16,
    pub(super) dir: TempDir,
    rt: tokio::runtime::Runtime,
    pub(super) client: Client,
}

/// Checks a Prometheus textfile with `promtool check metrics` (the
/// EBSNAP_PROMTOOL that tests/install-deps.sh unpacks); panics with what
/// promtool said when it finds a problem.
pub fn assert_promtool_accepts(text: &str) {
    let promtool = required_env_path("EBSNAP_PROMTOOL");
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {HOW_TO_RUN}", promtool.display()));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks Prometheus alerting rules with `promtool check rules FILE`.
pub fn assert_promtool_accepts_rules(rules: &str, dir: &std::path::Path) {
    let promtool = required_env_path("EBSNAP_PROMTOOL");
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {HOW_TO_RUN}", promtool.display()));
    assert!(
        out.status.success(),
        "promtool check rules: {}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
pub(super) use exclude_data_volumes_fix;

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
pub(super) fn http_request(
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

pub(super) fn form_encode(pairs: &[(&str, &str)]) -> String {
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
    pub(super) fn start_with(wrapper: &str) -> Emulator {
        let moto = required_env_path("EBSNAP_MOTO_SERVER");
        let faketime = required_env_path("EBSNAP_FAKETIME_LIB");
        // moto's 44 built-in AMIs only, not each region's ~1,300 "latest"
        // ones, whose snapshots every DescribeSnapshots would scan
        // (tests/install-deps.sh says more).
        let amis = required_env_path("EBSNAP_MOTO_AMIS");
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
                .env("MOTO_AMIS_PATH", &amis)
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
        let instance = self.run_instance(&self.client, tags, ACCOUNT_ID);
        instance.instance_id().expect("instance id").to_string()
    }

    /// Launches an instance as `launch_instance` does, in another `account`
    /// (`client_in_account`); returns its id and its root volume's.
    pub fn launch_instance_in(&self, account: &str, tags: &[(&str, &str)]) -> (String, String) {
        let client = self.client_in_account(account);
        let instance = self.run_instance(&client, tags, account);
        let root = instance.block_device_mappings()[0]
            .ebs()
            .and_then(|e| e.volume_id())
            .expect("root volume");
        (
            instance.instance_id().expect("instance id").to_string(),
            root.to_string(),
        )
    }

    fn run_instance(
        &self,
        client: &Client,
        tags: &[(&str, &str)],
        account: &str,
    ) -> aws_sdk_ec2::types::Instance {
        let mut req = client
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .placement(Placement::builder().availability_zone(AZ).build());
        if !tags.is_empty() {
            req = req.tag_specifications(tag_spec(ResourceType::Instance, tags));
        }
        let out = self
            .block_on(req.send())
            .unwrap_or_else(|e| panic!("RunInstances in {account}: {e:?}"));
        out.instances()[0].clone()
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
    /// them, including the snapshots of its 44 built-in AMIs).
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
