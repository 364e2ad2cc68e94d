//! A fault-injecting HTTP proxy between the binary and the emulator.
//!
//! The binary talks to the proxy (`EbsnapCommand::via`), the harness's own client
//! keeps talking to the emulator. The proxy forwards every request; per its
//! FaultPlan it answers some mutating calls with an EC2 error instead, and it
//! records every request it saw.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{iam, twin, Emulator};

/// The EC2 actions that change the account: the only ones the proxy faults or
/// holds (and never when sent with `DryRun=true`).
pub const MUTATING_ACTIONS: &[&str] = &[
    "CreateSnapshot",
    "CreateSnapshots",
    "DeleteSnapshot",
    "CreateTags",
    "CreateVolume",
    "AttachVolume",
    "ModifySnapshotTier",
    "RestoreSnapshotTier",
];

/// Safety net for one request to the emulator.
pub(super) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

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
    gate_after: Option<usize>,
    /// Roles whose AssumeRole the proxy refuses (STS `AccessDenied`).
    denied_roles: Vec<String>,
    failing_regions: Vec<String>,
    /// The IAM twin's policy and partition (tests/it/support/iam.rs).
    pub(super) iam: iam::IamTwin,
    /// What the EC2 twin adds (tests/it/support/twin.rs).
    pub(super) twin: twin::TwinPlan,
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
    /// get `fault`. A read action (DescribeInstances, ...) may be named too:
    /// its first `count` calls get `fault`, whatever they ask for.
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
    /// Each authorization the IAM twin judged ("ec2:X on ARN"; empty when
    /// no policy is set or the request is not EC2's).
    pub judged: Vec<String>,
    /// The authorization the IAM twin refused ("ec2:X on ARN"): the request
    /// was answered 403 UnauthorizedOperation and never forwarded.
    pub denied: Option<String>,
    /// What the EC2 twin did with the request (tests/it/support/twin.rs), e.g.
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

pub(super) struct ProxyState {
    pub(super) records: Vec<ProxyRecord>,
    rng: u64,
    mutating_seen: usize,
    calls_per_key: BTreeMap<String, usize>,
    faults_per_key: BTreeMap<String, usize>,
    released: bool,
    forward_held: bool,
}

pub(super) struct ProxyShared {
    pub(super) upstream_port: u16,
    pub(super) plan: FaultPlan,
    pub(super) state: Mutex<ProxyState>,
    changed: Condvar,
    pub(super) stop: AtomicBool,
    pub(super) twin: twin::TwinState,
}

/// The fault-injecting proxy: listens on 127.0.0.1:<free port>, forwards to the
/// emulator at 127.0.0.1:<upstream port>. Stops on drop.
pub struct FaultProxy {
    port: u16,
    pub(super) shared: Arc<ProxyShared>,
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
            twin: twin::TwinState::new(&plan.twin),
            plan,
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
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

pub(super) struct HttpRequest {
    method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
    body: Vec<u8>,
    pub(super) keep_alive: bool,
}

pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
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
        "CreateVolume" | "ModifySnapshotTier" | "RestoreSnapshotTier" => "SnapshotId",
        _ => "VolumeId",
    };
    params.get(key).cloned()
}

/// An HTTP response with an EC2 XML error body.
pub(super) fn ec2_error_response(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
) -> Vec<u8> {
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

pub(super) fn http_response(
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
pub(super) type UpstreamAnswer = (u16, String, Vec<(String, String)>, Vec<u8>);

/// Sends the request to the emulator on a fresh connection.
pub(super) fn forward_upstream(port: u16, req: &HttpRequest) -> std::io::Result<UpstreamAnswer> {
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
    pub(super) fn update(&self, seq: usize, f: impl FnOnce(&mut ProxyRecord)) {
        let mut state = self.state.lock().unwrap();
        f(&mut state.records[seq]);
        self.changed.notify_all();
    }

    /// Handles one request from `client`; None: close the connection
    /// without an answer.
    fn handle(&self, req: &HttpRequest, client: &TcpStream) -> Option<Vec<u8>> {
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
        // IAM as EC2 evaluates it (tests/it/support/iam.rs), before any fault: a
        // denied request goes no further.
        let iam = self.judge_iam(req, &params, &action);

        let (seq, fault, gated) = {
            let mut state = self.state.lock().unwrap();
            let seq = state.records.len();
            let mut fault = None;
            let mut gated = false;
            // A read is faulted only when a first-attempts rule names it
            // (the SDK's own retries of reads); random faults and the gate
            // are for the calls that change the account.
            let read_ruled =
                !mutating && self.plan.first_attempts.iter().any(|r| r.action == action);
            if read_ruled && iam.denial.is_none() {
                let key = format!("{action} {}", resource.as_deref().unwrap_or("-"));
                let calls = state.calls_per_key.get(&key).copied().unwrap_or(0);
                fault = self
                    .plan
                    .first_attempts
                    .iter()
                    .find(|rule| rule.action == action && calls < rule.count)
                    .map(|rule| rule.fault.clone());
                *state.calls_per_key.entry(key).or_insert(0) += 1;
            }
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
        if let Some(answer) = self.twin_before(seq, req, &fault, client) {
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
        let Some(answer) = shared.handle(&request, &writer) else {
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
