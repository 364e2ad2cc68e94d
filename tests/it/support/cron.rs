//! The binary as cron runs it: a bare environment, with credentials, region
//! and endpoint from `~/.aws`; and the binary on a terminal.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{EbsnapRun, Emulator, EBSNAP_TIMEOUT, REGION, TIME_SCALE};

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
/// (nothing else in the environment but the tests' time scale), standard
/// input closed (`<&-`, not even /dev/null), stdout and stderr pipes (no
/// terminal).
pub fn ebsnap_in_cron_env(home: &Path, args: &[&str]) -> EbsnapRun {
    let home_var = format!("HOME={}", home.display());
    let scale_var = format!("EBSNAP_TIME_SCALE={TIME_SCALE}");
    let mut cmd = Command::new("/usr/bin/env");
    cmd.args(["-i", "PATH=/usr/bin:/bin", &home_var, &scale_var])
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
        env: vec![
            "(env -i)".into(),
            "PATH=/usr/bin:/bin".into(),
            home_var,
            scale_var,
        ],
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
        ("EBSNAP_TIME_SCALE".into(), TIME_SCALE.to_string()),
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
