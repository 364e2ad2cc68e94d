//! Builds the EC2 clients: the standard AWS chain (environment, profile,
//! instance role) with the user's region, profile and endpoint on top.
//!
//! The AWS conventions hold as the aws cli keeps them: `--endpoint-url`
//! is EC2's alone (STS, for `--assume-role`, keeps its own: AWS_ENDPOINT_URL
//! or AWS_ENDPOINT_URL_STS); AWS_ENDPOINT_URL_EC2 works as for any SDK; and
//! the retries of the calls the SDK retries (the reads) follow
//! AWS_MAX_ATTEMPTS, AWS_RETRY_MODE and the profile's `max_attempts` and
//! `retry_mode` when the user set any of them (AWS SDKs and Tools Reference
//! Guide, "Retry behavior"). The creates and deletes are retried by ebsnap
//! itself (backup/retry.rs), never by the SDK.
//!
//! Also turns SDK errors into one line a person can act on.

pub mod accounts;
pub(crate) mod codes;

use std::error::Error as StdError;

use anyhow::{bail, Result};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

use crate::config::AwsSettings;
use crate::timing;
use codes::Ec2Code;

/// A region that could not be read (`list`, `check`), and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegionFailure {
    pub region: String,
    pub reason: String,
}

/// What a unit of work's EC2 clients are built from: the SDK's shared
/// configuration (credentials, region, retries, timeouts) and
/// `--endpoint-url`, which is EC2's alone and so not in the shared part
/// that STS is configured from.
#[derive(Debug, Clone)]
pub(crate) struct Ec2Config {
    pub sdk: SdkConfig,
    pub endpoint_url: Option<String>,
}

/// DescribeSnapshots' largest page.
pub(crate) const SNAPSHOT_PAGE_SIZE: i32 = 1000;
/// DescribeVolumes' largest page.
pub(crate) const VOLUME_PAGE_SIZE: i32 = 500;
/// DescribeInstances' largest page.
pub(crate) const INSTANCE_PAGE_SIZE: i32 = 1000;
/// DescribeSnapshotTierStatus' page size. Its API reference gives no
/// range for MaxResults; 1000 is the largest other EC2 describes take.
pub(crate) const TIER_STATUS_PAGE_SIZE: i32 = 1000;

/// Attempts per call for the SDK's own retries (creates retry in backup/retry.rs),
/// unless the user chose theirs.
const MAX_ATTEMPTS: u32 = 5;

/// The shared configuration, loaded once: credentials and settings from the
/// standard chain, overridden by `--profile`; `--endpoint-url` beside it.
pub(crate) async fn load_shared_config(settings: &AwsSettings) -> Ec2Config {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    // Standard retries (jittered exponential backoff), 5 attempts, unless
    // the user set theirs: not adaptive, since ebsnap paces its calls with
    // its own token buckets (backup/control.rs), and the adaptive
    // client-side limiter on top of them, shared by the creates and deletes
    // that run side by side, queued calls past their 40 s operation timeout
    // under heavy throttling.
    if !user_sets_retries(settings.profile.as_deref()).await {
        loader = loader.retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(timing::scaled(timing::SDK_RETRY_BACKOFF))
                .with_max_backoff(timing::scaled(timing::SDK_RETRY_MAX_BACKOFF)),
        );
    }
    Ec2Config {
        sdk: loader.load().await,
        endpoint_url: settings.endpoint_url.clone(),
    }
}

/// Every call's timeouts: `timing`'s (5 s to connect, 15 s an attempt,
/// 40 s a call with its retries), never scaled (see `timing`).
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timing::CONNECT_TIMEOUT)
        .operation_attempt_timeout(timing::ATTEMPT_TIMEOUT)
        .operation_timeout(timing::OPERATION_TIMEOUT)
        .build()
}

/// The settings the SDK reads its retries from, by precedence (AWS SDKs and
/// Tools Reference Guide, "Retry behavior": `AWS_MAX_ATTEMPTS`,
/// `AWS_RETRY_MODE`, or `max_attempts`/`retry_mode` in the shared config
/// file's profile).
const RETRY_ENV: [&str; 2] = ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"];
const RETRY_PROFILE_KEYS: [&str; 2] = ["max_attempts", "retry_mode"];

/// Whether the user chose the SDK's retries, in the environment or in the
/// profile in use (`--profile`, else AWS_PROFILE, else `default`). A profile
/// file that cannot be read sets nothing here: the SDK reports it itself.
async fn user_sets_retries(profile: Option<&str>) -> bool {
    let env = aws_types::os_shim_internal::Env::real();
    if RETRY_ENV
        .iter()
        .any(|name| env.get(name).is_ok_and(|v| !v.is_empty()))
    {
        return true;
    }
    let profiles = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &env,
        &Default::default(),
        profile.map(|p| std::borrow::Cow::Owned(p.to_owned())),
    )
    .await;
    profiles.is_ok_and(|set| RETRY_PROFILE_KEYS.iter().any(|key| set.get(key).is_some()))
}

/// The regions this run covers: `--region` flags; with `--all-regions`,
/// every region enabled for the account (DescribeRegions, asked in the
/// chain's region or us-east-1); else the chain's region.
pub(crate) async fn regions(settings: &AwsSettings, shared: &Ec2Config) -> Result<Vec<String>> {
    if !settings.regions.is_empty() {
        return Ok(settings.regions.clone());
    }
    let home = shared.sdk.region().map(|r| r.to_string());
    if settings.all_regions {
        return enabled_regions(&client(shared, home.as_deref().unwrap_or("us-east-1"))).await;
    }
    match home {
        Some(region) => Ok(vec![region]),
        None => bail!("no AWS region configured: pass --region REGION, or set AWS_REGION or a region in your AWS profile"),
    }
}

/// The regions enabled for the account (opt-in regions only once opted in).
pub(crate) async fn enabled_regions(client: &Client) -> Result<Vec<String>> {
    let output = client
        .describe_regions()
        .all_regions(false)
        .send()
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "listing the account's regions for --all-regions: {}",
                error_text(&err)
            )
        })?;
    let mut names: Vec<String> = output
        .regions()
        .iter()
        .filter_map(|r| r.region_name())
        .map(str::to_owned)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("EC2 listed no enabled region for --all-regions: pass --region REGION instead");
    }
    Ok(names)
}

/// An EC2 client for one region: `--endpoint-url` when given, else the
/// SDK's own choice (AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL, or AWS).
pub(crate) fn client(shared: &Ec2Config, region: &str) -> Client {
    let mut config =
        aws_sdk_ec2::config::Builder::from(&shared.sdk).region(Region::new(region.to_owned()));
    if let Some(endpoint) = &shared.endpoint_url {
        config = config.endpoint_url(endpoint);
    }
    Client::from_conf(config.build())
}

/// One line for a failed call: EC2's code and message when it sent them,
/// else the chain of causes (timeouts, refused connections, missing
/// credentials), outermost first.
pub(crate) fn error_text<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some((code, hint)) =
        Ec2Code::of(err.code()).and_then(|code| Some((code, code.credential_hint()?)))
    {
        return format!("{code}: {hint}");
    }
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ if is_missing_credentials(err) => NO_CREDENTIALS.to_owned(),
        _ => cause_chain(err),
    }
}

/// One line for credentials that could not be had, e.g. a role STS would
/// not let these credentials assume: STS's code and message when it sent
/// them, and what to do.
pub(crate) fn credentials_error_text(err: &CredentialsError) -> String {
    if is_missing_credentials(err) {
        return NO_CREDENTIALS.to_owned();
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some((code, meta)) = cause
            .downcast_ref::<aws_sdk_ec2::error::ErrorMetadata>()
            .and_then(|meta| Some((meta.code()?, meta)))
        {
            let known = Ec2Code::parse(code);
            if let Some(hint) = known.and_then(Ec2Code::credential_hint) {
                return format!("{code}: {hint}");
            }
            let message = meta.message().map(|m| format!(": {m}")).unwrap_or_default();
            let hint = if known == Some(Ec2Code::AccessDenied) {
                ": check that the role's trust policy lets these credentials assume it \
                 (with --external-id, if it asks for one) and that they are allowed \
                 sts:AssumeRole on it"
            } else {
                ""
            };
            return format!("{code}{message}{hint}");
        }
        source = cause.source();
    }
    cause_chain(err)
}

/// What to do when the standard chain found no credentials at all.
pub(crate) const NO_CREDENTIALS: &str =
    "no AWS credentials found: set AWS_PROFILE (or pass --profile), \
or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run on a host with an instance role";

fn is_missing_credentials(err: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) =
            cause.downcast_ref::<CredentialsError>()
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// `outer: inner: innermost` on one line, skipping causes that only repeat
/// their parent.
pub(crate) fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let one_line = |e: &dyn StdError| {
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts: Vec<String> = vec![one_line(err)];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = one_line(cause);
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// How many calls that change the account may be in flight at once in one
/// region: enough to hide the round trip, far below EC2's burst capacity.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

/// What a `DryRun=true` call proved: `Ok` when EC2 answered
/// `DryRunOperation` (the credentials may do the real thing), else why not.
pub(crate) fn dry_run_verdict<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<(), String>
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let err = match result {
        Ok(_) => {
            return Err("EC2 carried out a call sent with DryRun=true; check --endpoint-url".into())
        }
        Err(err) => CallError::new(&err),
    };
    match err.kind {
        CallErrorKind::DryRunOk => Ok(()),
        CallErrorKind::Unauthorized if err.code == Some(Ec2Code::UnauthorizedOperation) => {
            Err(format!("not permitted: {err}"))
        }
        _ => Err(err.to_string()),
    }
}

/// A failed SDK call, classified once: EC2's code (typed where ebsnap knows
/// it), its message, the HTTP status, what it means (`kind`), and the line
/// a person reads (`Display`, `error_text`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    pub code: Option<Ec2Code>,
    pub message: Option<String>,
    pub status: Option<u16>,
    pub kind: CallErrorKind,
    text: String,
}

/// What a failed call means, as ebsnap's decisions need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallErrorKind {
    /// A `DryRun=true` call that would have succeeded.
    DryRunOk,
    /// Throttled: refused before doing anything; try again later.
    Throttled,
    /// A limit of the volume or of copies in progress: wait longer.
    Busy,
    /// The snapshot, volume or instance named does not exist (or not yet:
    /// EC2's describes lag behind its state), or its id is malformed.
    NotFound,
    /// An AMI uses the snapshot.
    InUse,
    /// A refusal of the caller: its permissions, credentials or account.
    Unauthorized,
    /// Another refusal (a 4xx with a code): the call did nothing.
    Refused,
    /// No answer that says (a 5xx, a timeout, a reset): it may have been
    /// carried out.
    Transient,
}

impl CallError {
    pub(crate) fn new<E>(err: &SdkError<E, HttpResponse>) -> CallError
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = Ec2Code::of(err.code());
        let kind = match code {
            Some(Ec2Code::DryRunOperation) => CallErrorKind::DryRunOk,
            Some(code) if code.is_throttled() => CallErrorKind::Throttled,
            Some(code) if code.is_busy() => CallErrorKind::Busy,
            Some(
                Ec2Code::SnapshotNotFound
                | Ec2Code::SnapshotIdMalformed
                | Ec2Code::InstanceNotFound
                | Ec2Code::InstanceIdMalformed
                | Ec2Code::VolumeNotFound,
            ) => CallErrorKind::NotFound,
            Some(Ec2Code::SnapshotInUse) => CallErrorKind::InUse,
            Some(code) if code.is_about_the_caller() => CallErrorKind::Unauthorized,
            _ if err.code().is_some() && status.is_some_and(|s| s < 500) => CallErrorKind::Refused,
            _ => CallErrorKind::Transient,
        };
        CallError {
            code,
            message: err.message().map(str::to_owned),
            status,
            kind,
            text: error_text(err),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl StdError for CallError {}

/// EC2 tags from (key, value) pairs.
pub(crate) fn ec2_tags<K: Into<String>, V: Into<String>>(
    tags: impl IntoIterator<Item = (K, V)>,
) -> Vec<Tag> {
    tags.into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// The tags a create (or copy) call sets on the resources it makes.
pub(crate) fn tag_spec<K: Into<String>, V: Into<String>>(
    resource: ResourceType,
    tags: impl IntoIterator<Item = (K, V)>,
) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::config::http::HttpResponse;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;

    fn service_error(code: &str, message: &str) -> SdkError<DescribeInstancesError, HttpResponse> {
        let response = HttpResponse::new(403.try_into().unwrap(), String::new().into());
        SdkError::service_error(
            DescribeInstancesError::generic(testing::ec2_error(code, message)),
            response,
        )
    }

    #[tokio::test]
    async fn all_regions_are_the_enabled_ones_sorted() {
        use aws_sdk_ec2::operation::describe_regions::DescribeRegionsOutput;
        use aws_sdk_ec2::types::Region as Ec2Region;
        use aws_smithy_mocks::{mock, mock_client};
        let rule = mock!(Client::describe_regions)
            .match_requests(|req| req.all_regions() == Some(false))
            .then_output(|| {
                DescribeRegionsOutput::builder()
                    .regions(Ec2Region::builder().region_name("us-east-1").build())
                    .regions(Ec2Region::builder().region_name("eu-west-1").build())
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        assert_eq!(
            enabled_regions(&client).await.unwrap(),
            ["eu-west-1", "us-east-1"]
        );
    }

    #[test]
    fn an_endpoint_that_never_answers_is_given_up_on_within_a_minute() {
        // 5 s to connect, 15 s an attempt, 40 s a call with its retries: a
        // silent endpoint never holds a cron job for minutes.
        let timeouts = timeouts();
        let s = std::time::Duration::from_secs;
        assert_eq!(timeouts.connect_timeout(), Some(s(5)));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(s(15)));
        assert_eq!(timeouts.operation_timeout(), Some(s(40)));
    }

    #[test]
    fn rejected_and_expired_credentials_say_what_to_do() {
        let text = error_text(&service_error(
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        ));
        assert!(
            text.starts_with("AuthFailure: AWS rejected the credentials: check the access key"),
            "{text}"
        );
        let text = error_text(&service_error("RequestExpired", "Request has expired."));
        assert!(text.contains("expired: renew them"), "{text}");
        let text = error_text(&service_error(
            "UnauthorizedOperation",
            "You are not authorized",
        ));
        assert_eq!(text, "UnauthorizedOperation: You are not authorized");
    }
}

/// Helpers for tests of the SDK edge with aws-smithy-mocks.
#[cfg(test)]
pub(crate) mod testing {
    use aws_sdk_ec2::error::ErrorMetadata;

    /// An EC2 error as the SDK surfaces it: EC2's errors are unmodeled, so
    /// they arrive as generic errors carrying a code and a message.
    pub(crate) fn ec2_error(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    /// The body of an EC2 error answer, for `http_status(status, body)`:
    /// unlike `ec2_error`, it comes with the HTTP status EC2 sends.
    pub(crate) fn ec2_error_body(code: &str) -> Option<String> {
        Some(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
             <Message>{code} happened</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
        ))
    }
}
