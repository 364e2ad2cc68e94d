//! `--assume-role`: several accounts in one run.
//!
//! Each role is assumed through STS with the standard chain's credentials
//! (aws-config's AssumeRoleProvider, which renews them before they expire),
//! and each account and region becomes a unit of work of its own, with its
//! own clients, pacing and report section. A role that cannot be assumed, or
//! an account whose regions cannot be listed, fails that account's units
//! only. Without `--assume-role` there is one account, the chain's own, and
//! one unit per region, as there always was.

use std::sync::Mutex;

use anyhow::{bail, Result};
use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use futures_util::future::join_all;

use crate::aws::{self, Ec2Config};
use crate::config::AwsSettings;
use crate::values::Role;

/// One unit of work: a region of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    /// The account id when roles are assumed; `None`: the chain's own account.
    pub account: Option<String>,
    pub region: String,
}

/// Why a unit could not even start: the step that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked {
    pub action: BlockedStep,
    pub reason: String,
}

/// The step before any work that can fail an account's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockedStep {
    /// STS would not let the chain's credentials assume the role.
    AssumeRole,
    /// `--all-regions`: the account's regions could not be listed.
    ListRegions,
}

/// What one account resolved to before any work: the regions to cover and
/// the configuration to cover them with, or why the account cannot be used
/// (then `regions` are those it would have covered, or, with
/// `--all-regions`, the region the failed call was made in).
#[derive(Debug)]
pub(crate) struct Account<C> {
    pub account: Option<String>,
    pub regions: Vec<String>,
    pub access: Result<C, Blocked>,
}

/// Every account's regions as units, each with the account's access; a
/// blocked account gives each of its units the same failure, and never
/// touches another account's units.
pub(crate) fn units<C: Clone>(accounts: Vec<Account<C>>) -> Vec<(Unit, Result<C, Blocked>)> {
    accounts
        .into_iter()
        .flat_map(|account| {
            let Account {
                account,
                regions,
                access,
            } = account;
            regions.into_iter().map(move |region| {
                let unit = Unit {
                    account: account.clone(),
                    region,
                };
                (unit, access.clone())
            })
        })
        .collect()
}

/// Refuses, before any call, what `--assume-role` cannot do: two roles in
/// one account (each account would be backed up twice). The commands that
/// work in one account only do not take the flag (cli.rs).
pub fn check_usage(settings: &AwsSettings) -> Result<()> {
    for (i, role) in settings.roles.iter().enumerate() {
        if let Some(other) = settings.roles[..i]
            .iter()
            .find(|r| r.account == role.account)
        {
            bail!(
                "{} and {} are both in account {}: give one --assume-role per account",
                other.arn,
                role.arn,
                role.account
            );
        }
    }
    Ok(())
}

/// The role session name, `ebsnap-<job>`, which the account's CloudTrail
/// shows: the job name with what a session name may not hold replaced by
/// `-`, at most 64 characters.
pub(crate) fn session_name(job: &str) -> String {
    format!("ebsnap-{job}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

/// The region STS is asked in: the chain's, else the first `--region`, else
/// us-east-1 (its endpoint is the SDK's choice: AWS_ENDPOINT_URL_STS,
/// AWS_ENDPOINT_URL, or AWS; never `--endpoint-url`, which is EC2's).
fn sts_region(settings: &AwsSettings, shared: &SdkConfig) -> String {
    shared
        .region()
        .map(|r| r.to_string())
        .or_else(|| settings.regions.first().cloned())
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// The accounts of this run. Without `--assume-role`, the chain's own with
/// its regions; an `Err` then means nothing can be attempted, as before.
/// With roles, every role is assumed (and with `--all-regions` its regions
/// listed) concurrently, each account's failure its own.
pub(crate) async fn resolve(
    settings: &AwsSettings,
    shared: &Ec2Config,
    job: &str,
) -> Result<Vec<Account<Ec2Config>>> {
    if settings.roles.is_empty() {
        return Ok(vec![Account {
            account: None,
            regions: aws::regions(settings, shared).await?,
            access: Ok(shared.clone()),
        }]);
    }
    // Without --all-regions, every account's regions are known before any call.
    let fixed = if settings.all_regions {
        None
    } else {
        Some(aws::regions(settings, shared).await?)
    };
    let sts_region = sts_region(settings, &shared.sdk);
    let list_region = shared
        .sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".to_owned());
    Ok(join_all(settings.roles.iter().map(|role| async {
        let blocked = |action, reason, region: &str| Account {
            account: Some(role.account.clone()),
            regions: fixed.clone().unwrap_or_else(|| vec![region.to_owned()]),
            access: Err(Blocked { action, reason }),
        };
        let config = match assume(role, settings, shared, &sts_region, job).await {
            Ok(config) => config,
            Err(reason) => return blocked(BlockedStep::AssumeRole, reason, &sts_region),
        };
        let regions = match &fixed {
            Some(regions) => regions.clone(),
            None => match aws::regions(settings, &config).await {
                Ok(regions) => regions,
                Err(err) => {
                    return blocked(BlockedStep::ListRegions, format!("{err:#}"), &list_region)
                }
            },
        };
        Account {
            account: Some(role.account.clone()),
            regions,
            access: Ok(config),
        }
    }))
    .await)
}

/// The shared configuration with the role's credentials: assumed once now,
/// so a role that cannot be assumed fails here with STS's reason, then
/// renewed by STS whenever the SDK's cache finds them about to expire.
async fn assume(
    role: &Role,
    settings: &AwsSettings,
    shared: &Ec2Config,
    sts_region: &str,
    job: &str,
) -> Result<Ec2Config, String> {
    let mut builder = AssumeRoleProvider::builder(&role.arn)
        .session_name(session_name(job))
        .configure(&shared.sdk)
        .region(Region::new(sts_region.to_owned()));
    if let Some(id) = &settings.external_id {
        builder = builder.external_id(id);
    }
    let provider = builder.build().await;
    let checked = provider.provide_credentials().await.map_err(|err| {
        format!(
            "assuming {}: {}",
            role.arn,
            aws::credentials_error_text(&err)
        )
    })?;
    tracing::info!(role = role.arn, "assumed");
    let credentials = Assumed {
        checked: Mutex::new(Some(checked)),
        role: provider,
    };
    Ok(Ec2Config {
        sdk: shared
            .sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build(),
        endpoint_url: shared.endpoint_url.clone(),
    })
}

/// A role's credentials: first the ones fetched to check the role, then new
/// ones from STS each time they are asked for (the SDK's identity cache asks
/// only when those it holds are about to expire).
#[derive(Debug)]
struct Assumed {
    checked: Mutex<Option<Credentials>>,
    role: AssumeRoleProvider,
}

impl ProvideCredentials for Assumed {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match checked {
            Some(credentials) => future::ProvideCredentials::ready(Ok(credentials)),
            None => self.role.provide_credentials(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::parse_role_arn;

    fn account(id: Option<&str>, regions: &[&str], access: Result<u8, Blocked>) -> Account<u8> {
        Account {
            account: id.map(str::to_owned),
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            access,
        }
    }

    fn unit(account: Option<&str>, region: &str) -> Unit {
        Unit {
            account: account.map(str::to_owned),
            region: region.to_owned(),
        }
    }

    #[test]
    fn without_roles_the_units_are_the_regions() {
        let got = units(vec![account(None, &["eu-west-1", "us-east-1"], Ok(0))]);
        assert_eq!(
            got,
            [
                (unit(None, "eu-west-1"), Ok(0)),
                (unit(None, "us-east-1"), Ok(0))
            ]
        );
    }

    #[test]
    fn units_are_accounts_times_regions_and_a_blocked_account_blocks_only_its_own() {
        let denied = Blocked {
            action: BlockedStep::AssumeRole,
            reason: "AccessDenied".into(),
        };
        let got = units(vec![
            account(Some("111111111111"), &["eu-west-1", "us-east-1"], Ok(1)),
            account(
                Some("222222222222"),
                &["eu-west-1", "us-east-1"],
                Err(denied.clone()),
            ),
            account(Some("333333333333"), &["us-east-1"], Ok(3)),
        ]);
        assert_eq!(
            got,
            [
                (unit(Some("111111111111"), "eu-west-1"), Ok(1)),
                (unit(Some("111111111111"), "us-east-1"), Ok(1)),
                (unit(Some("222222222222"), "eu-west-1"), Err(denied.clone())),
                (unit(Some("222222222222"), "us-east-1"), Err(denied)),
                (unit(Some("333333333333"), "us-east-1"), Ok(3)),
            ]
        );
    }

    fn settings(roles: &[&str]) -> AwsSettings {
        AwsSettings {
            roles: roles.iter().map(|r| parse_role_arn(r).unwrap()).collect(),
            ..AwsSettings::default()
        }
    }

    #[test]
    fn one_role_per_account() {
        let two = settings(&[
            "arn:aws:iam::111111111111:role/backup",
            "arn:aws:iam::222222222222:role/backup",
        ]);
        assert!(check_usage(&two).is_ok());
        assert!(check_usage(&settings(&[])).is_ok());
        let same = settings(&[
            "arn:aws:iam::111111111111:role/backup",
            "arn:aws:iam::111111111111:role/other",
        ]);
        assert_eq!(
            check_usage(&same).unwrap_err().to_string(),
            "arn:aws:iam::111111111111:role/backup and arn:aws:iam::111111111111:role/other \
             are both in account 111111111111: give one --assume-role per account"
        );
    }

    #[test]
    fn session_names_are_ebsnap_and_the_job_made_safe() {
        assert_eq!(session_name("default"), "ebsnap-default");
        assert_eq!(session_name("db nightly/a:b"), "ebsnap-db-nightly-a-b");
        assert_eq!(session_name(&"x".repeat(128)).len(), 64);
    }
}
