//! IAM enforcement that accepts the AWS SDK for Rust's signatures: an emulator
//! whose own IAM check (`Emulator::enforce_iam`) can judge ebsnap's requests.

use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::Client;

use super::emulator::exclude_data_volumes_fix;

use super::Emulator;

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
