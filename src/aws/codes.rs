//! The error codes of EC2 (and STS) that ebsnap acts on, in one place: the
//! code an answer carries is looked up here once, and every decision
//! matches the typed `Ec2Code`, never a string. EC2 API Reference, "Error
//! codes for the Amazon EC2 API"; STS API Reference, "Common Errors".

/// An error code ebsnap tells apart. A code not listed here is none of
/// ebsnap's business beyond its text (and the HTTP status: a 5xx may have
/// been carried out, a 4xx was refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ec2Code {
    /// A `DryRun=true` call that would have succeeded.
    DryRunOperation,
    /// IAM denied the call.
    UnauthorizedOperation,
    /// The credentials are not valid for EC2.
    AuthFailure,
    /// The account is blocked.
    Blocked,
    /// Throttled by EC2's token buckets.
    RequestLimitExceeded,
    Throttling,
    ThrottlingException,
    /// A second CreateSnapshot on a volume within seconds.
    SnapshotCreationPerVolumeRateExceeded,
    /// Too many pending snapshots of a volume.
    ConcurrentSnapshotLimitExceeded,
    /// Too many copies in progress (CopySnapshot).
    ResourceLimitExceeded,
    /// `InvalidSnapshot.NotFound`: gone, or not shown yet (EC2's describes
    /// lag behind its state).
    SnapshotNotFound,
    /// `InvalidSnapshot.InUse`: an AMI uses it.
    SnapshotInUse,
    /// `InvalidSnapshotID.Malformed`.
    SnapshotIdMalformed,
    /// `InvalidInstanceID.NotFound`.
    InstanceNotFound,
    /// `InvalidInstanceID.Malformed`.
    InstanceIdMalformed,
    /// `InvalidVolume.NotFound`.
    VolumeNotFound,
    /// The resource is not in a state the call accepts (e.g. a snapshot
    /// already on its way to the archive).
    IncorrectState,
    /// A lock refused a delete.
    SnapshotLocked,
    /// EC2's own failure (500).
    InternalError,
    /// EC2 unavailable (503).
    Unavailable,
    /// Credentials AWS does not know.
    InvalidClientTokenId,
    UnrecognizedClientException,
    SignatureDoesNotMatch,
    /// Credentials or a request past their time.
    ExpiredToken,
    RequestExpired,
    ExpiredTokenException,
    /// STS: the role's trust policy does not let these credentials assume it.
    AccessDenied,
}

impl Ec2Code {
    pub(crate) const ALL: [Ec2Code; 27] = [
        Ec2Code::DryRunOperation,
        Ec2Code::UnauthorizedOperation,
        Ec2Code::AuthFailure,
        Ec2Code::Blocked,
        Ec2Code::RequestLimitExceeded,
        Ec2Code::Throttling,
        Ec2Code::ThrottlingException,
        Ec2Code::SnapshotCreationPerVolumeRateExceeded,
        Ec2Code::ConcurrentSnapshotLimitExceeded,
        Ec2Code::ResourceLimitExceeded,
        Ec2Code::SnapshotNotFound,
        Ec2Code::SnapshotInUse,
        Ec2Code::SnapshotIdMalformed,
        Ec2Code::InstanceNotFound,
        Ec2Code::InstanceIdMalformed,
        Ec2Code::VolumeNotFound,
        Ec2Code::IncorrectState,
        Ec2Code::SnapshotLocked,
        Ec2Code::InternalError,
        Ec2Code::Unavailable,
        Ec2Code::InvalidClientTokenId,
        Ec2Code::UnrecognizedClientException,
        Ec2Code::SignatureDoesNotMatch,
        Ec2Code::ExpiredToken,
        Ec2Code::RequestExpired,
        Ec2Code::ExpiredTokenException,
        Ec2Code::AccessDenied,
    ];

    /// The code as EC2 writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ec2Code::DryRunOperation => "DryRunOperation",
            Ec2Code::UnauthorizedOperation => "UnauthorizedOperation",
            Ec2Code::AuthFailure => "AuthFailure",
            Ec2Code::Blocked => "Blocked",
            Ec2Code::RequestLimitExceeded => "RequestLimitExceeded",
            Ec2Code::Throttling => "Throttling",
            Ec2Code::ThrottlingException => "ThrottlingException",
            Ec2Code::SnapshotCreationPerVolumeRateExceeded => {
                "SnapshotCreationPerVolumeRateExceeded"
            }
            Ec2Code::ConcurrentSnapshotLimitExceeded => "ConcurrentSnapshotLimitExceeded",
            Ec2Code::ResourceLimitExceeded => "ResourceLimitExceeded",
            Ec2Code::SnapshotNotFound => "InvalidSnapshot.NotFound",
            Ec2Code::SnapshotInUse => "InvalidSnapshot.InUse",
            Ec2Code::SnapshotIdMalformed => "InvalidSnapshotID.Malformed",
            Ec2Code::InstanceNotFound => "InvalidInstanceID.NotFound",
            Ec2Code::InstanceIdMalformed => "InvalidInstanceID.Malformed",
            Ec2Code::VolumeNotFound => "InvalidVolume.NotFound",
            Ec2Code::IncorrectState => "IncorrectState",
            Ec2Code::SnapshotLocked => "SnapshotLocked",
            Ec2Code::InternalError => "InternalError",
            Ec2Code::Unavailable => "Unavailable",
            Ec2Code::InvalidClientTokenId => "InvalidClientTokenId",
            Ec2Code::UnrecognizedClientException => "UnrecognizedClientException",
            Ec2Code::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Ec2Code::ExpiredToken => "ExpiredToken",
            Ec2Code::RequestExpired => "RequestExpired",
            Ec2Code::ExpiredTokenException => "ExpiredTokenException",
            Ec2Code::AccessDenied => "AccessDenied",
        }
    }

    /// The code an answer carried, if ebsnap knows it.
    pub(crate) fn parse(code: &str) -> Option<Ec2Code> {
        Ec2Code::ALL
            .into_iter()
            .find(|known| known.as_str() == code)
    }

    /// `parse` of an SDK error's optional code.
    pub(crate) fn of(code: Option<&str>) -> Option<Ec2Code> {
        code.and_then(Ec2Code::parse)
    }

    /// Throttled by EC2's (or STS's) token buckets: try again later.
    pub(crate) fn is_throttled(self) -> bool {
        matches!(
            self,
            Ec2Code::RequestLimitExceeded | Ec2Code::Throttling | Ec2Code::ThrottlingException
        )
    }

    /// A limit of the volume (or of copies in progress): wait longer.
    pub(crate) fn is_busy(self) -> bool {
        matches!(
            self,
            Ec2Code::SnapshotCreationPerVolumeRateExceeded
                | Ec2Code::ConcurrentSnapshotLimitExceeded
                | Ec2Code::ResourceLimitExceeded
        )
    }

    /// A refusal of the caller (its permissions, its credentials, its
    /// account), not of the resource.
    pub(crate) fn is_about_the_caller(self) -> bool {
        matches!(
            self,
            Ec2Code::UnauthorizedOperation | Ec2Code::AuthFailure | Ec2Code::Blocked
        )
    }

    /// What to do about credentials AWS turned away, if that is what the
    /// code says.
    pub(crate) fn credential_hint(self) -> Option<&'static str> {
        match self {
            Ec2Code::AuthFailure
            | Ec2Code::InvalidClientTokenId
            | Ec2Code::UnrecognizedClientException
            | Ec2Code::SignatureDoesNotMatch => Some(
                "AWS rejected the credentials: check the access key and secret (AWS_PROFILE, ~/.aws/credentials) \
                 and that they belong to this account",
            ),
            Ec2Code::ExpiredToken | Ec2Code::RequestExpired | Ec2Code::ExpiredTokenException => Some(
                "the credentials have expired: renew them (e.g. aws sso login) or check the host's clock",
            ),
            _ => None,
        }
    }
}

impl std::fmt::Display for Ec2Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself() {
        for code in Ec2Code::ALL {
            assert_eq!(Ec2Code::parse(code.as_str()), Some(code), "{code}");
        }
        assert_eq!(Ec2Code::parse("InvalidParameterValue"), None);
        assert_eq!(Ec2Code::of(None), None);
    }
}
