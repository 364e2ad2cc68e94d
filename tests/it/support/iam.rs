//! IAM as EC2 evaluates it, for the test harness's EC2 twin.
//!
//! moto checks actions only (see tests/it/host.rs) and evaluates no condition;
//! real EC2 judges each call once per resource it touches, with that
//! resource's ARN and condition keys, and judges the tags of a create a second
//! time as `ec2:CreateTags`. This module does the same, in three layers:
//!
//! 1. A policy model and its evaluator ([`Policy`]), pure: statements,
//!    `Allow`/`Deny`, `Action`, `Resource` and the condition operators a
//!    least-privilege EC2 policy uses. Anything else in a policy panics: the
//!    twin never allows what it cannot judge.
//! 2. A request model ([`authorizations`]): for each EC2 action ebsnap calls,
//!    the authorizations EC2 makes (action, resource ARN, condition context),
//!    from the query parameters and what the account holds ([`Ec2State`]).
//! 3. The proxy glue ([`ProxyShared::judge_iam`]): reads the caller's account
//!    and the resources' tags from the emulator, judges, and answers a denial
//!    as EC2 does (HTTP 403 `UnauthorizedOperation`).
//!
//! Sources, cited where each rule is used:
//! - [SAR-EC2] Service Authorization Reference, "Actions, resources, and
//!   condition keys for Amazon EC2"
//!   (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html):
//!   the resource types of each action, their ARN formats and condition keys.
//!   Read here as policy_sentry's scrape of that page
//!   (salesforce/policy_sentry, policy_sentry/shared/data/docs/list_amazonec2.html).
//! - [EC2-TAG] Amazon EC2 User Guide, "Grant permission to tag Amazon EC2
//!   resources during creation"
//!   (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html):
//!   the second authorization as `ec2:CreateTags` with `ec2:CreateAction`.
//! - [IAM-COND] IAM User Guide, "IAM JSON policy elements: Condition operators"
//!   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
//! - [IAM-MULTI] IAM User Guide, "Single-valued vs. multivalued context keys"
//!   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html):
//!   `ForAllValues:` / `ForAnyValue:`.
//! - [IAM-RES] IAM User Guide, "IAM JSON policy elements: Resource"
//!   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html):
//!   wildcards within ARN segments.
//! - [IAM-ACTION] IAM User Guide, "IAM JSON policy elements: Action": action
//!   names are case-insensitive and take wildcards.
//! - [IAM-EVAL] IAM User Guide, "Policy evaluation logic": an explicit deny
//!   overrides any allow; without an allow the request is implicitly denied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{http_request, http_response, FaultPlan, HttpRequest, ProxyShared};

// ---------------------------------------------------------------------------
// The policy model

/// An identity-based policy document, parsed. Panics on any element or
/// operator the twin does not evaluate, so that a policy is never judged
/// more leniently than AWS would judge it.
#[derive(Clone, Debug)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug)]
struct Statement {
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    /// ANDed: every condition must hold ([IAM-COND]).
    conditions: Vec<Condition>,
}

/// The base operators supported ([IAM-COND]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    /// `ArnEquals` behaves as `ArnLike` ([IAM-COND], "Amazon Resource Name
    /// (ARN) condition operators").
    ArnLike,
    ArnNotLike,
    Null,
    Bool,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        Some(match name {
            "StringEquals" => Operator::StringEquals,
            "StringNotEquals" => Operator::StringNotEquals,
            "StringLike" => Operator::StringLike,
            "StringNotLike" => Operator::StringNotLike,
            "ArnLike" | "ArnEquals" => Operator::ArnLike,
            "ArnNotLike" | "ArnNotEquals" => Operator::ArnNotLike,
            "Null" => Operator::Null,
            "Bool" => Operator::Bool,
            _ => return None,
        })
    }

    /// The negated operators: their values combine as NOR, and a missing key
    /// makes them true ([IAM-COND], "Important").
    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals | Operator::StringNotLike | Operator::ArnNotLike
        )
    }

    /// Whether one request value matches one policy value, before negation.
    fn matches(self, policy: &str, request: &str) -> bool {
        match self {
            // Case-sensitive exact match.
            Operator::StringEquals | Operator::StringNotEquals => policy == request,
            // Case-sensitive, `*` and `?` anywhere in the value.
            Operator::StringLike | Operator::StringNotLike => wildcard(policy, request, false),
            Operator::ArnLike | Operator::ArnNotLike => arn_like(policy, request),
            Operator::Bool => policy.eq_ignore_ascii_case(request),
            Operator::Null => unreachable!("Null compares presence, not values"),
        }
    }
}

/// `ForAllValues:` / `ForAnyValue:` ([IAM-MULTI]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetOperator {
    Single,
    ForAllValues,
    ForAnyValue,
}

#[derive(Clone, Debug)]
struct Condition {
    set: SetOperator,
    operator: Operator,
    /// As written; looked up case-insensitively ([EC2-TAG]: "the condition
    /// key is not case-sensitive and the condition value is case-sensitive").
    key: String,
    /// ORed (NORed for a negated operator) ([IAM-COND]).
    values: Vec<String>,
}

/// Condition keys whose value is a set: they need a set operator.
const MULTIVALUED_KEYS: &[&str] = &["aws:tagkeys"];

/// The condition keys the request model fills wherever AWS fills them. A
/// policy naming any other key panics: its absence would make a negated
/// operator true and could allow what AWS denies.
fn modeled_key(lower: &str) -> bool {
    ["aws:requesttag/", "aws:resourcetag/", "ec2:resourcetag/"]
        .iter()
        .any(|prefix| lower.starts_with(prefix) && lower.len() > prefix.len())
        || [
            "aws:tagkeys",
            "ec2:createaction",
            "ec2:region",
            "aws:requestedregion",
        ]
        .contains(&lower)
}

fn strings(value: &Value, what: &str) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("IAM twin: {what} must be a string or a list of strings, not {other}"),
    };
    match value {
        Value::Array(list) => list.iter().map(one).collect(),
        other => vec![one(other)],
    }
}

fn no_policy_variables(value: &str, what: &str) {
    assert!(
        !value.contains("${"),
        "IAM twin: policy variables are not supported ({what} {value:?})"
    );
}

impl Policy {
    /// Parses a policy document. Panics, naming the element, on anything the
    /// twin does not evaluate.
    pub fn parse(json: &str) -> Policy {
        let doc: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("IAM twin: the policy is not JSON: {e}\n{json}"));
        let Value::Object(doc) = doc else {
            panic!("IAM twin: a policy is a JSON object\n{json}");
        };
        for key in doc.keys() {
            assert!(
                ["Version", "Id", "Statement"].contains(&key.as_str()),
                "IAM twin: policy element {key:?} is not supported"
            );
        }
        match doc.get("Version").and_then(Value::as_str) {
            Some("2012-10-17") | Some("2008-10-17") => {}
            other => panic!("IAM twin: policy Version {other:?} is not supported"),
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.iter().map(Statement::parse).collect(),
            Some(one @ Value::Object(_)) => vec![Statement::parse(one)],
            other => panic!("IAM twin: Statement must be a list or an object, not {other:?}"),
        };
        Policy { statements }
    }

    /// The decision for one authorization ([IAM-EVAL]).
    pub fn evaluate(&self, auth: &Authorization) -> Decision {
        let applies = |s: &&Statement| s.applies(auth);
        if self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Deny)
            .any(|s| applies(&s))
        {
            Decision::ExplicitDeny
        } else if self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .any(|s| applies(&s))
        {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

impl Statement {
    fn parse(value: &Value) -> Statement {
        let Value::Object(map) = value else {
            panic!("IAM twin: a statement is a JSON object, not {value}");
        };
        for key in map.keys() {
            assert!(
                ["Sid", "Effect", "Action", "Resource", "Condition"].contains(&key.as_str()),
                "IAM twin: statement element {key:?} is not supported (in {value})"
            );
        }
        let effect = match map.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => panic!("IAM twin: Effect {other:?} (in {value})"),
        };
        let actions = strings(
            map.get("Action")
                .unwrap_or_else(|| panic!("IAM twin: a statement without Action: {value}")),
            "Action",
        );
        let resources = strings(
            map.get("Resource")
                .unwrap_or_else(|| panic!("IAM twin: a statement without Resource: {value}")),
            "Resource",
        );
        for r in &resources {
            no_policy_variables(r, "Resource");
        }
        let mut conditions = Vec::new();
        if let Some(block) = map.get("Condition") {
            let Value::Object(block) = block else {
                panic!("IAM twin: Condition must be an object (in {value})");
            };
            for (op_name, keys) in block {
                let (set, base) = if let Some(rest) = op_name.strip_prefix("ForAllValues:") {
                    (SetOperator::ForAllValues, rest)
                } else if let Some(rest) = op_name.strip_prefix("ForAnyValue:") {
                    (SetOperator::ForAnyValue, rest)
                } else {
                    (SetOperator::Single, op_name.as_str())
                };
                let operator = Operator::parse(base).unwrap_or_else(|| {
                    panic!("IAM twin: condition operator {op_name:?} is not supported (in {value})")
                });
                assert!(
                    set == SetOperator::Single
                        || !matches!(operator, Operator::Null | Operator::Bool),
                    "IAM twin: {op_name:?} is not supported (in {value})"
                );
                let Value::Object(keys) = keys else {
                    panic!("IAM twin: {op_name} must map keys to values (in {value})");
                };
                for (key, values) in keys {
                    let values = strings(values, "a condition value");
                    for v in &values {
                        no_policy_variables(v, "condition value");
                    }
                    assert!(!values.is_empty(), "IAM twin: {op_name} {key} has no value");
                    if operator == Operator::Null || operator == Operator::Bool {
                        assert!(
                            values.len() == 1
                                && ["true", "false"]
                                    .contains(&values[0].to_ascii_lowercase().as_str()),
                            "IAM twin: {op_name} {key} takes one of true/false, not {values:?}"
                        );
                    }
                    conditions.push(Condition {
                        set,
                        operator,
                        key: key.clone(),
                        values,
                    });
                }
            }
        }
        Statement {
            effect,
            actions,
            resources,
            conditions,
        }
    }

    fn applies(&self, auth: &Authorization) -> bool {
        // [IAM-ACTION]: case-insensitive, `*` and `?`.
        let action = auth.action.to_ascii_lowercase();
        self.actions
            .iter()
            .any(|a| wildcard(&a.to_ascii_lowercase(), &action, false))
            // [IAM-RES]: case-sensitive, wildcards within ARN segments.
            && self.resources.iter().any(|r| wildcard(r, &auth.resource, true))
            && self.conditions.iter().all(|c| c.holds(&auth.context))
    }
}

impl Condition {
    fn holds(&self, context: &Context) -> bool {
        let lower = self.key.to_ascii_lowercase();
        let request = context.get(&lower);
        if request.is_none() {
            assert!(
                modeled_key(&lower),
                "IAM twin: condition key {:?} is not modeled; the twin cannot judge it",
                self.key
            );
        }
        let multivalued = MULTIVALUED_KEYS.contains(&lower.as_str());
        if self.operator == Operator::Null {
            // [IAM-COND], "Condition operator to check existence of condition
            // keys": true = the key must be absent, false = present.
            let absent = request.is_none_or(|v| v.is_empty());
            return absent == self.values[0].eq_ignore_ascii_case("true");
        }
        let one = |value: &str| -> bool {
            let any = self.values.iter().any(|p| self.operator.matches(p, value));
            if self.operator.negated() {
                !any
            } else {
                any
            }
        };
        match self.set {
            SetOperator::Single => {
                assert!(
                    !multivalued,
                    "IAM twin: {} is multivalued: use ForAllValues: or ForAnyValue: ([IAM-MULTI])",
                    self.key
                );
                match request {
                    // [IAM-COND], "Important": a missing key does not match;
                    // a negated operator is then true.
                    None => self.operator.negated(),
                    Some(values) => values.iter().any(|v| one(v)),
                }
            }
            // [IAM-MULTI]: true when every request value passes, and also
            // when the request has no value for the key.
            SetOperator::ForAllValues => request.is_none_or(|values| values.iter().all(|v| one(v))),
            // [IAM-MULTI]: at least one request value passes; false without one.
            SetOperator::ForAnyValue => request.is_some_and(|values| values.iter().any(|v| one(v))),
        }
    }
}

/// Matches `text` against `pattern`: `*` any run of characters, `?` one.
/// With `arn_segments`, as the Resource element matches ([IAM-RES]):
/// wildcards stay within an ARN segment (the parts separated by colons),
/// except a `*` that ends its segment, which may expand across colons.
pub fn wildcard(pattern: &str, text: &str, arn_segments: bool) -> bool {
    fn go(p: &[char], t: &[char], segments: bool) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => {
                let crosses = !segments || rest.first().is_none_or(|&c| c == ':');
                for i in 0..=t.len() {
                    if go(rest, &t[i..], segments) {
                        return true;
                    }
                    if i < t.len() && !crosses && t[i] == ':' {
                        return false;
                    }
                }
                false
            }
            Some(('?', rest)) => t
                .split_first()
                .is_some_and(|(&c, tail)| !(segments && c == ':') && go(rest, tail, segments)),
            Some((&c, rest)) => t
                .split_first()
                .is_some_and(|(&d, tail)| c == d && go(rest, tail, segments)),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t, arn_segments)
}

/// `ArnLike`: "Each of the six colon-delimited components of the ARN is
/// checked separately and each can include multi-character match wildcards
/// (*) or single-character match wildcards (?)" ([IAM-COND]).
fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| wildcard(p, a, false))
}

/// The outcome of evaluating one authorization ([IAM-EVAL]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ImplicitDeny,
    ExplicitDeny,
}

// ---------------------------------------------------------------------------
// The request model

/// The condition context of one authorization: key (lower case) to values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    values: BTreeMap<String, Vec<String>>,
}

impl Context {
    /// Sets `key` (any case) to `values`.
    pub fn with(mut self, key: &str, values: &[&str]) -> Context {
        self.values.insert(
            key.to_ascii_lowercase(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        self
    }

    fn set(&mut self, key: &str, value: &str) {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.to_string()]);
    }

    fn get(&self, lower: &str) -> Option<&[String]> {
        self.values.get(lower).map(Vec::as_slice)
    }

    /// `aws:RequestTag/K` for each tag and `aws:TagKeys`: the tags the request
    /// puts on the resource ([SAR-EC2]; [EC2-TAG], "Control access to specific
    /// tags").
    fn request_tags(&mut self, tags: &[(String, String)]) {
        if tags.is_empty() {
            return;
        }
        for (k, v) in tags {
            self.set(&format!("aws:RequestTag/{k}"), v);
        }
        self.values.insert(
            "aws:tagkeys".into(),
            tags.iter().map(|(k, _)| k.clone()).collect(),
        );
    }

    /// `aws:ResourceTag/K` and `ec2:ResourceTag/K` for each tag an existing
    /// resource carries: the resource condition keys of the volume, snapshot
    /// and instance resource types ([SAR-EC2], "Resource types defined by
    /// Amazon EC2"; the page's note: "Resource condition keys are listed in
    /// the Resource types table ... which are the resource condition keys that
    /// apply to an action in the Actions table").
    fn resource_tags(&mut self, tags: &Tags) {
        for (k, v) in tags {
            self.set(&format!("aws:ResourceTag/{k}"), v);
            self.set(&format!("ec2:ResourceTag/{k}"), v);
        }
    }
}

/// One authorization EC2 makes for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// `ec2:CreateTags`.
    pub action: String,
    pub resource: String,
    pub context: Context,
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        if let Some(create) = self.context.get("ec2:createaction") {
            write!(f, " (ec2:CreateAction={})", create.join(","))?;
        }
        Ok(())
    }
}

pub type Tags = BTreeMap<String, String>;

/// What the request model needs to know of an instance.
#[derive(Clone, Debug, Default)]
pub struct InstanceFacts {
    pub tags: Tags,
    pub root_device: Option<String>,
    /// (device name, volume id) of each attached EBS volume.
    pub volumes: Vec<(String, String)>,
}

/// What the account holds, as the request model asks for it.
pub trait Ec2State {
    /// The tags of the volume, snapshot or instance `id` in `region`; None
    /// when there is no such resource.
    fn tags(&self, region: &str, id: &str) -> Option<Tags>;
    /// The instance `id` in `region`; None when there is no such instance.
    fn instance(&self, region: &str, id: &str) -> Option<InstanceFacts>;
}

/// Partition, region (the one the request is signed for) and account of the
/// caller: the parts of the ARNs ([SAR-EC2], resource types table).
#[derive(Clone, Debug)]
pub struct Scope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Instance,
    Volume,
    Snapshot,
}

impl Kind {
    fn of_id(id: &str) -> Option<Kind> {
        if id.starts_with("i-") {
            Some(Kind::Instance)
        } else if id.starts_with("vol-") {
            Some(Kind::Volume)
        } else if id.starts_with("snap-") {
            Some(Kind::Snapshot)
        } else {
            None
        }
    }

    /// The `ResourceType` of a TagSpecification for this kind.
    fn tag_type(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
        }
    }
}

/// The id in the ARN of a resource a create is making: EC2 judges it before
/// the id exists, and names it with `*` in its denials, e.g. "is not
/// authorized to perform: ec2:CreateSnapshot on resource:
/// arn:aws:ec2:us-east-1::snapshot/* because no identity-based policy allows
/// the ec2:CreateSnapshot action" (as real EC2 answers, in public reports).
/// A policy's `snapshot/*` matches it; a policy naming an id cannot.
pub const NEW: &str = "*";

impl Scope {
    /// [SAR-EC2], resource types table:
    /// `arn:${Partition}:ec2:${Region}:${Account}:instance/${InstanceId}`,
    /// `arn:${Partition}:ec2:${Region}:${Account}:volume/${VolumeId}`,
    /// `arn:${Partition}:ec2:${Region}::snapshot/${SnapshotId}` (no account).
    fn arn(&self, kind: Kind, region: &str, id: &str) -> String {
        let p = &self.partition;
        let a = &self.account;
        match kind {
            Kind::Instance => format!("arn:{p}:ec2:{region}:{a}:instance/{id}"),
            Kind::Volume => format!("arn:{p}:ec2:{region}:{a}:volume/{id}"),
            Kind::Snapshot => format!("arn:{p}:ec2:{region}::snapshot/{id}"),
        }
    }

    /// The action-level keys of every EC2 authorization: `ec2:Region`
    /// ([SAR-EC2] lists it for every action) and the global
    /// `aws:RequestedRegion`.
    fn base(&self) -> Context {
        let mut c = Context::default();
        c.set("ec2:Region", &self.region);
        c.set("aws:RequestedRegion", &self.region);
        c
    }
}

/// What the model makes of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// Every authorization EC2 makes for it, in order.
    Judge(Vec<Authorization>),
    /// It names a resource that does not exist, or lacks a required
    /// parameter: EC2 answers that error (moto will), there is nothing to
    /// authorize against.
    Unjudged(String),
    /// The twin has no model of it: denied, never allowed.
    Unmodeled(String),
}

/// The TagSpecification.N of a request: (ResourceType, tags) in order.
fn tag_specifications(params: &BTreeMap<String, String>) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for n in 1.. {
        let Some(kind) = params.get(&format!("TagSpecification.{n}.ResourceType")) else {
            break;
        };
        out.push((
            kind.clone(),
            numbered_tags(params, &format!("TagSpecification.{n}.Tag")),
        ));
    }
    out
}

/// `{prefix}.M.Key` / `{prefix}.M.Value`, M from 1.
fn numbered_tags(params: &BTreeMap<String, String>, prefix: &str) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    for m in 1.. {
        let Some(key) = params.get(&format!("{prefix}.{m}.Key")) else {
            break;
        };
        let value = params
            .get(&format!("{prefix}.{m}.Value"))
            .cloned()
            .unwrap_or_default();
        tags.push((key.clone(), value));
    }
    tags
}

/// `{prefix}.N`, N from 1.
fn numbered(params: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    (1..)
        .map_while(|n| params.get(&format!("{prefix}.{n}")).cloned())
        .collect()
}

/// The authorizations EC2 makes for `action` with `params`, signed for
/// `scope.region`. Resource types per action from [SAR-EC2] (Actions table;
/// "*" marks a required resource type):
///
/// | action | resource types | ebsnap's call |
/// |---|---|---|
/// | DescribeInstances, DescribeVolumes, DescribeSnapshots, DescribeRegions, DescribeLockedSnapshots, DescribeSnapshotTierStatus | none: `Resource` must be `*` | discovery, list, check, restore, waits, `--all-regions`, locks, the archive tier |
/// | CreateSnapshot | snapshot*, volume* | `--per-volume` |
/// | CreateSnapshots | instance*, snapshot*, volume* | the default mode |
/// | CreateTags | the tagged resource (snapshot, volume, instance, ...) | device and Name after CreateSnapshots |
/// | DeleteSnapshot | snapshot* | purge |
/// | CopySnapshot | snapshot* ("Resource-level permissions specified for this action apply to both the snapshot copy and the source snapshot") | `--copy-to` |
/// | CreateVolume | volume*, snapshot | restore |
/// | AttachVolume | instance*, volume* | `restore --attach-to` |
/// | ModifySnapshotTier, RestoreSnapshotTier | snapshot* | `--archive-after`, `restore --from-archive` |
///
/// Which keys each authorization carries: the new resource of a create
/// `aws:RequestTag/*` and `aws:TagKeys` (SAR lists them on the created type's
/// row only: on snapshot* for CreateSnapshot(s), not on volume* or
/// instance*; on volume* for CreateVolume, not on its source snapshot); an
/// existing resource its `aws:ResourceTag/*` and `ec2:ResourceTag/*`
/// ([`Context::resource_tags`]); every one `ec2:Region`. A create whose
/// TagSpecifications carry tags is also judged as `ec2:CreateTags` on each
/// new resource with `ec2:CreateAction` = the create's name and the tags'
/// `aws:RequestTag/*` and `aws:TagKeys` ([EC2-TAG]: "If tags are specified in
/// the resource-creating action, Amazon performs additional authorization on
/// the ec2:CreateTags action"; "The ec2:CreateTags action is only evaluated if
/// tags are applied during the resource-creating action"; SAR's CreateTags
/// row lists `ec2:CreateAction`). DryRun changes nothing here: EC2 judges a
/// DryRun request as the real one, and answers DryRunOperation only when it
/// would be allowed.
pub fn authorizations(
    action: &str,
    params: &BTreeMap<String, String>,
    scope: &Scope,
    state: &dyn Ec2State,
) -> Requested {
    let region = scope.region.as_str();
    let ec2 = |a: &str| format!("ec2:{a}");
    let param = |key: &str| params.get(key).map(String::as_str);
    macro_rules! required {
        ($key:expr) => {
            match param($key) {
                Some(v) if !v.is_empty() => v,
                _ => return Requested::Unjudged(format!("{action} without {}", $key)),
            }
        };
    }
    macro_rules! existing_tags {
        ($region:expr, $id:expr) => {
            match state.tags($region, $id) {
                Some(tags) => tags,
                None => return Requested::Unjudged(format!("{} does not exist", $id)),
            }
        };
    }
    for unmodeled in ["OutpostArn", "CopyTagsFromSource", "Location"] {
        if params.contains_key(unmodeled) {
            return Requested::Unmodeled(format!("{action} with {unmodeled}"));
        }
    }
    // The tags a create puts on the resource it makes, from its
    // TagSpecifications; any other resource type is not modeled.
    let create_tags = |made: Kind| -> Result<Vec<(String, String)>, Requested> {
        let mut tags = Vec::new();
        for (kind, specified) in tag_specifications(params) {
            if kind != made.tag_type() {
                return Err(Requested::Unmodeled(format!(
                    "{action} with a TagSpecification for {kind}"
                )));
            }
            tags.extend(specified);
        }
        Ok(tags)
    };
    // The authorization of a new resource, and the CreateTags one [EC2-TAG].
    let new_resource = |out: &mut Vec<Authorization>, arn: String, tags: &[(String, String)]| {
        let mut context = scope.base();
        context.request_tags(tags);
        out.push(Authorization {
            action: ec2(action),
            resource: arn.clone(),
            context,
        });
    };
    let tag_on_create = |out: &mut Vec<Authorization>, arn: String, tags: &[(String, String)]| {
        if tags.is_empty() {
            return;
        }
        let mut context = scope.base();
        context.request_tags(tags);
        context.set("ec2:CreateAction", action);
        out.push(Authorization {
            action: ec2("CreateTags"),
            resource: arn,
            context,
        });
    };
    let existing = |arn: String, tags: &Tags| {
        let mut context = scope.base();
        context.resource_tags(tags);
        Authorization {
            action: ec2(action),
            resource: arn,
            context,
        }
    };

    let mut out = Vec::new();
    match action {
        // [SAR-EC2]: no resource type; "you must specify all resources ("*")".
        "DescribeInstances"
        | "DescribeVolumes"
        | "DescribeSnapshots"
        | "DescribeRegions"
        | "DescribeLockedSnapshots"
        // [SAR-EC2] DescribeSnapshotTierStatus: access level List, no
        // resource type, condition key ec2:Region only.
        | "DescribeSnapshotTierStatus" => out.push(Authorization {
            action: ec2(action),
            resource: "*".into(),
            context: scope.base(),
        }),
        // [SAR-EC2] CreateSnapshot: snapshot* (aws:RequestTag/${TagKey},
        // aws:TagKeys, ...), volume* (aws:ResourceTag/${TagKey},
        // ec2:ResourceTag/${TagKey}, ...); dependent action ec2:CreateTags.
        "CreateSnapshot" => {
            let volume = required!("VolumeId");
            let volume_tags = existing_tags!(region, volume);
            let tags = match create_tags(Kind::Snapshot) {
                Ok(t) => t,
                Err(e) => return e,
            };
            out.push(existing(
                scope.arn(Kind::Volume, region, volume),
                &volume_tags,
            ));
            new_resource(&mut out, scope.arn(Kind::Snapshot, region, NEW), &tags);
            tag_on_create(&mut out, scope.arn(Kind::Snapshot, region, NEW), &tags);
        }
        // [SAR-EC2] CreateSnapshots: instance* (aws:ResourceTag/${TagKey},
        // ec2:ResourceTag/${TagKey}, ...), snapshot* (aws:RequestTag/${TagKey},
        // aws:TagKeys, ...), volume* (aws:ResourceTag/${TagKey},
        // ec2:ResourceTag/${TagKey}, ...); dependent action ec2:CreateTags.
        // The volumes are those of the instance the request includes: every
        // attached EBS volume, less the root volume with ExcludeBootVolume,
        // less each ExcludeDataVolumeId.N (EC2 API Reference,
        // InstanceSpecification); one new snapshot each.
        "CreateSnapshots" => {
            let instance_id = required!("InstanceSpecification.InstanceId");
            let Some(instance) = state.instance(region, instance_id) else {
                return Requested::Unjudged(format!("{instance_id} does not exist"));
            };
            let tags = match create_tags(Kind::Snapshot) {
                Ok(t) => t,
                Err(e) => return e,
            };
            let exclude_boot = param("InstanceSpecification.ExcludeBootVolume")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let excluded: BTreeSet<String> =
                numbered(params, "InstanceSpecification.ExcludeDataVolumeId")
                    .into_iter()
                    .collect();
            out.push(existing(
                scope.arn(Kind::Instance, region, instance_id),
                &instance.tags,
            ));
            let included: Vec<&String> = instance
                .volumes
                .iter()
                .filter(|(device, volume)| {
                    let boot = instance.root_device.as_deref() == Some(device.as_str());
                    !(exclude_boot && boot) && (boot || !excluded.contains(volume))
                })
                .map(|(_, volume)| volume)
                .collect();
            for volume in &included {
                let volume_tags = existing_tags!(region, volume.as_str());
                out.push(existing(
                    scope.arn(Kind::Volume, region, volume),
                    &volume_tags,
                ));
            }
            for _ in &included {
                new_resource(&mut out, scope.arn(Kind::Snapshot, region, NEW), &tags);
                tag_on_create(&mut out, scope.arn(Kind::Snapshot, region, NEW), &tags);
            }
        }
        // [SAR-EC2] CreateTags: one row per taggable resource type, each with
        // aws:RequestTag/${TagKey}, aws:ResourceTag/${TagKey}, aws:TagKeys,
        // ec2:ResourceTag/${TagKey}; called directly it carries no
        // ec2:CreateAction.
        "CreateTags" => {
            let ids = numbered(params, "ResourceId");
            if ids.is_empty() {
                return Requested::Unjudged("CreateTags without ResourceId.1".into());
            }
            let tags = numbered_tags(params, "Tag");
            for id in &ids {
                let Some(kind) = Kind::of_id(id) else {
                    return Requested::Unmodeled(format!("CreateTags on {id}"));
                };
                let resource_tags = existing_tags!(region, id.as_str());
                let mut auth = existing(scope.arn(kind, region, id), &resource_tags);
                auth.context.request_tags(&tags);
                out.push(auth);
            }
        }
        // [SAR-EC2] DeleteSnapshot: snapshot* (aws:ResourceTag/${TagKey},
        // ec2:ResourceTag/${TagKey}, ...).
        "DeleteSnapshot" => {
            let snapshot = required!("SnapshotId");
            let snapshot_tags = existing_tags!(region, snapshot);
            out.push(existing(
                scope.arn(Kind::Snapshot, region, snapshot),
                &snapshot_tags,
            ));
        }
        // [SAR-EC2] CopySnapshot: snapshot* (aws:RequestTag/${TagKey},
        // aws:TagKeys, ...), "Resource-level permissions specified for this
        // action apply to both the snapshot copy and the source snapshot". The
        // request goes to the destination region (the one it is signed for);
        // the source is SourceSnapshotId in SourceRegion (EC2 API Reference,
        // CopySnapshot). The request's tags are the copy's, and only the copy
        // is judged with them, as CreateVolume's source snapshot is judged
        // without them: an existing resource is judged by its own tags.
        "CopySnapshot" => {
            let source_region = required!("SourceRegion");
            let source = required!("SourceSnapshotId");
            let source_tags = existing_tags!(source_region, source);
            let tags = match create_tags(Kind::Snapshot) {
                Ok(t) => t,
                Err(e) => return e,
            };
            out.push(existing(
                scope.arn(Kind::Snapshot, source_region, source),
                &source_tags,
            ));
            new_resource(&mut out, scope.arn(Kind::Snapshot, region, NEW), &tags);
            tag_on_create(&mut out, scope.arn(Kind::Snapshot, region, NEW), &tags);
        }
        // [SAR-EC2] CreateVolume: volume* (aws:RequestTag/${TagKey},
        // aws:TagKeys, ...), snapshot (aws:ResourceTag/${TagKey},
        // ec2:ResourceTag/${TagKey}, ...) when made from one; dependent action
        // ec2:CreateTags.
        "CreateVolume" => {
            let tags = match create_tags(Kind::Volume) {
                Ok(t) => t,
                Err(e) => return e,
            };
            if let Some(snapshot) = param("SnapshotId").filter(|s| !s.is_empty()) {
                let snapshot_tags = existing_tags!(region, snapshot);
                out.push(existing(
                    scope.arn(Kind::Snapshot, region, snapshot),
                    &snapshot_tags,
                ));
            }
            new_resource(&mut out, scope.arn(Kind::Volume, region, NEW), &tags);
            tag_on_create(&mut out, scope.arn(Kind::Volume, region, NEW), &tags);
        }
        // [SAR-EC2] ModifySnapshotTier ("Grants permission to archive Amazon
        // EBS snapshots") and RestoreSnapshotTier ("Grants permission to
        // restore an archived Amazon EBS snapshot for use temporarily or
        // permanently, or modify the restore period or restore type"): Write,
        // snapshot* with aws:ResourceTag/${TagKey}, ec2:ResourceTag/${TagKey}
        // (and ec2:Encrypted, ec2:Owner, ec2:ParentVolume, ec2:SnapshotID,
        // ec2:SnapshotTime, ec2:VolumeSize; ModifySnapshotTier also
        // ec2:Attribute: not modeled, a policy naming them panics), and
        // ec2:Region. The snapshot is judged by its own tags.
        "ModifySnapshotTier" | "RestoreSnapshotTier" => {
            let snapshot = required!("SnapshotId");
            let snapshot_tags = existing_tags!(region, snapshot);
            out.push(existing(
                scope.arn(Kind::Snapshot, region, snapshot),
                &snapshot_tags,
            ));
        }
        // [SAR-EC2] AttachVolume: instance* and volume*, each with
        // aws:ResourceTag/${TagKey} and ec2:ResourceTag/${TagKey}.
        "AttachVolume" => {
            let instance = required!("InstanceId");
            let volume = required!("VolumeId");
            let instance_tags = existing_tags!(region, instance);
            let volume_tags = existing_tags!(region, volume);
            out.push(existing(
                scope.arn(Kind::Instance, region, instance),
                &instance_tags,
            ));
            out.push(existing(
                scope.arn(Kind::Volume, region, volume),
                &volume_tags,
            ));
        }
        other => return Requested::Unmodeled(format!("ec2:{other}")),
    }
    Requested::Judge(out)
}

/// The first authorization `policy` refuses, explicit denies first
/// ([IAM-EVAL]); None: every one is allowed.
pub fn refused(policy: &Policy, auths: &[Authorization]) -> Option<(Authorization, Decision)> {
    let decisions: Vec<(Authorization, Decision)> = auths
        .iter()
        .map(|a| (a.clone(), policy.evaluate(a)))
        .collect();
    decisions
        .iter()
        .find(|(_, d)| *d == Decision::ExplicitDeny)
        .or_else(|| decisions.iter().find(|(_, d)| *d == Decision::ImplicitDeny))
        .cloned()
}

// ---------------------------------------------------------------------------
// The proxy glue

/// A request the twin refused.
#[derive(Clone, Debug)]
pub(super) struct Denial {
    /// "ec2:CreateTags on arn:..." (what ProxyRecord::denied holds).
    pub what: String,
    pub message: String,
}

/// The twin's IAM settings of a FaultPlan: off until `FaultPlan::iam_policy`.
#[derive(Clone, Debug, Default)]
pub struct IamTwin {
    policy: Option<Policy>,
    partition: Option<String>,
    /// Caller (account, ARN) per access key, from STS GetCallerIdentity.
    callers: Arc<Mutex<BTreeMap<String, (String, String)>>>,
}

impl FaultPlan {
    /// Judges every EC2 request against this identity-based policy, as EC2
    /// does (tests/it/support/iam.rs), before any fault: a refused request is
    /// answered HTTP 403 `UnauthorizedOperation` and never reaches the
    /// emulator, whether DryRun or not. STS, moto's own API and other
    /// services pass unjudged. Do not combine with moto's own enforcement
    /// (`Emulator::enforce_iam`): the twin reads the account's state with the
    /// caller's credentials and its own, unsigned, requests.
    pub fn iam_policy(mut self, policy_json: &str) -> FaultPlan {
        self.iam.policy = Some(Policy::parse(policy_json));
        self
    }

    /// The partition of the ARNs the IAM twin judges (`aws`, `aws-cn`,
    /// `aws-us-gov`); `aws` by default.
    pub fn iam_partition(mut self, partition: &str) -> FaultPlan {
        self.iam.partition = Some(partition.to_string());
        self
    }
}

/// The policy `ebsnap iam-policy` prints for the default job, as printed:
/// asked of the binary once for all the tests.
pub fn printed_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebsnap"))
            .arg("iam-policy")
            .env("EBSNAP_TIME_SCALE", super::TIME_SCALE.to_string())
            .output()
            .expect("run ebsnap iam-policy");
        assert!(out.status.success(), "ebsnap iam-policy: {out:?}");
        String::from_utf8(out.stdout).expect("the policy is UTF-8")
    })
}

/// The policy `ebsnap iam-policy ARGS` prints with `env` in its
/// environment: for a job of its own flags (`--job`, `--tag`, or
/// `EBSNAP_TAG`), printed as docs/reference/iam.md says, with the run's own flags.
pub fn printed_policy_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebsnap"))
        .arg("iam-policy")
        .args(args)
        .env("EBSNAP_TIME_SCALE", super::TIME_SCALE.to_string())
        .envs(env.iter().copied())
        .output()
        .expect("run ebsnap iam-policy");
    assert!(out.status.success(), "ebsnap iam-policy {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("the policy is UTF-8")
}

impl FaultPlan {
    /// IAM as EC2 evaluates it (`iam_policy`), under the policy
    /// `ebsnap iam-policy` prints, unchanged: what users are told to grant.
    pub fn under_printed_policy(self) -> FaultPlan {
        self.iam_policy(printed_policy())
    }

    /// `under_printed_policy`, the policy printed with the run's own flags
    /// and environment (`printed_policy_with`).
    pub fn under_policy_printed_with(self, args: &[&str], env: &[(&str, &str)]) -> FaultPlan {
        self.iam_policy(&printed_policy_with(args, env))
    }
}

/// What the twin made of one request, for the proxy's record.
#[derive(Debug, Default)]
pub(super) struct IamVerdict {
    /// Each authorization judged ("ec2:X on ARN"), or why none was.
    pub judged: Vec<String>,
    pub denial: Option<Denial>,
}

/// The SigV4 credential scope of a request: (access key, date, region, service)
/// from `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ...`.
fn credential_scope(req: &HttpRequest) -> Option<(String, String, String, String)> {
    let auth = super::header(&req.headers, "authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let parts: Vec<&str> = scope.split('/').collect();
    (parts.len() == 5).then(|| {
        (
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].to_string(),
            parts[3].to_string(),
        )
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Denial {
    /// EC2's answer: HTTP 403, `UnauthorizedOperation`.
    pub(super) fn response(&self, request_id: &str, keep_alive: bool) -> Vec<u8> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
             <Code>UnauthorizedOperation</Code><Message>{}</Message></Error></Errors>\
             <RequestID>{request_id}</RequestID></Response>",
            xml_escape(&self.message)
        );
        http_response(
            403,
            "Forbidden",
            &[("Content-Type".into(), "text/xml;charset=UTF-8".into())],
            body.as_bytes(),
            keep_alive,
        )
    }
}

/// The emulator's state, read with the caller's own access key (so moto
/// answers for the caller's account) and moto's `x-moto-account-id` when
/// the request carried it.
struct MotoState {
    port: u16,
    key: String,
    date: String,
    moto_account: Option<String>,
}

impl MotoState {
    /// Sends `params` to the emulator as `service` in `region`; (status, body).
    fn query(&self, service: &str, region: &str, params: &[(&str, &str)]) -> (u16, String) {
        // moto does not check signatures unless IAM is enforced: the scope
        // only tells it the access key (hence the account), region and service.
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{region}/{service}/aws4_request, \
             SignedHeaders=host, Signature=0",
            self.key, self.date
        );
        let mut headers = vec![
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Authorization", auth.as_str()),
        ];
        if let Some(account) = &self.moto_account {
            headers.push(("x-moto-account-id", account.as_str()));
        }
        http_request(
            self.port,
            "POST",
            "/",
            &headers,
            &super::form_encode(params),
            super::UPSTREAM_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("IAM twin: {params:?} to the emulator failed: {e}"))
    }

    /// A Describe* by id: the item node, or None when moto says NotFound.
    fn describe(&self, region: &str, action: &str, id_param: &str, id: &str) -> Option<XmlNode> {
        let (status, body) = self.query(
            "ec2",
            region,
            &[
                ("Action", action),
                ("Version", "2016-11-15"),
                (id_param, id),
            ],
        );
        let doc = XmlNode::parse(&body);
        if status >= 300 {
            let code = doc.find("Code").map(|n| n.text.clone()).unwrap_or_default();
            assert!(
                code.ends_with(".NotFound"),
                "IAM twin: {action} {id} in {region}: HTTP {status}: {body}"
            );
            return None;
        }
        let id_element = match action {
            "DescribeInstances" => "instanceId",
            "DescribeVolumes" => "volumeId",
            _ => "snapshotId",
        };
        let set = match action {
            "DescribeInstances" => "instancesSet",
            "DescribeVolumes" => "volumeSet",
            _ => "snapshotSet",
        };
        let found = doc
            .find_all(set)
            .into_iter()
            .flat_map(|s| s.children_named("item"))
            .find(|item| item.child(id_element).is_some_and(|n| n.text == id))
            .cloned();
        found
    }

    /// The caller's (account, ARN), from STS GetCallerIdentity (moto maps an
    /// AssumeRole session's access key to the role's account).
    fn caller(&self, region: &str) -> (String, String) {
        let (status, body) = self.query(
            "sts",
            region,
            &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
        );
        assert!(
            status < 300,
            "IAM twin: GetCallerIdentity: HTTP {status}: {body}"
        );
        let doc = XmlNode::parse(&body);
        let field = |name: &str| {
            doc.find(name)
                .map(|n| n.text.clone())
                .unwrap_or_else(|| panic!("IAM twin: no {name} in GetCallerIdentity: {body}"))
        };
        (field("Account"), field("Arn"))
    }
}

fn tag_set(node: &XmlNode) -> Tags {
    node.child("tagSet")
        .map(|set| {
            set.children_named("item")
                .map(|item| {
                    let text = |n: &str| item.child(n).map(|c| c.text.clone()).unwrap_or_default();
                    (text("key"), text("value"))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Ec2State for MotoState {
    fn tags(&self, region: &str, id: &str) -> Option<Tags> {
        let (action, param) = match Kind::of_id(id)? {
            Kind::Instance => ("DescribeInstances", "InstanceId.1"),
            Kind::Volume => ("DescribeVolumes", "VolumeId.1"),
            Kind::Snapshot => ("DescribeSnapshots", "SnapshotId.1"),
        };
        self.describe(region, action, param, id)
            .map(|item| tag_set(&item))
    }

    fn instance(&self, region: &str, id: &str) -> Option<InstanceFacts> {
        let item = self.describe(region, "DescribeInstances", "InstanceId.1", id)?;
        let text = |node: &XmlNode, n: &str| node.child(n).map(|c| c.text.clone());
        let volumes = item
            .child("blockDeviceMapping")
            .map(|m| {
                m.children_named("item")
                    .filter_map(|b| {
                        let device = text(b, "deviceName")?;
                        let volume = b.child("ebs").and_then(|e| text(e, "volumeId"))?;
                        Some((device, volume))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(InstanceFacts {
            tags: tag_set(&item),
            root_device: text(&item, "rootDeviceName"),
            volumes,
        })
    }
}

impl ProxyShared {
    /// Judges one request under the plan's policy (nothing when there is
    /// none, and for anything but EC2: STS, moto's API, other services).
    pub(super) fn judge_iam(
        &self,
        req: &HttpRequest,
        params: &BTreeMap<String, String>,
        action: &str,
    ) -> IamVerdict {
        let twin = &self.plan.iam;
        let Some(policy) = &twin.policy else {
            return IamVerdict::default();
        };
        if req.target.starts_with("/moto-api") || action.is_empty() {
            return IamVerdict::default();
        }
        let Some((key, date, region, service)) = credential_scope(req) else {
            // EC2 refuses a request that is not signed; the twin never lets
            // one through unjudged.
            let what = format!("ec2:{action} unsigned (no SigV4 Authorization header)");
            return IamVerdict {
                judged: vec![what.clone()],
                denial: Some(Denial {
                    message: format!("You are not authorized to perform this operation. {what}"),
                    what,
                }),
            };
        };
        if service != "ec2" {
            return IamVerdict::default();
        }
        let state = MotoState {
            port: self.upstream_port,
            key: key.clone(),
            date,
            moto_account: super::header(&req.headers, "x-moto-account-id").map(str::to_string),
        };
        let cache_key = format!("{key} {}", state.moto_account.as_deref().unwrap_or("-"));
        let cached = twin.callers.lock().unwrap().get(&cache_key).cloned();
        let (account, principal) = match cached {
            Some(c) => c,
            None => {
                let c = state.caller(&region);
                twin.callers.lock().unwrap().insert(cache_key, c.clone());
                c
            }
        };
        let scope = Scope {
            partition: twin.partition.clone().unwrap_or_else(|| "aws".into()),
            region,
            account,
        };
        let auths = match authorizations(action, params, &scope, &state) {
            Requested::Judge(auths) => auths,
            Requested::Unjudged(why) => {
                return IamVerdict {
                    judged: vec![format!("not judged: {why}")],
                    denial: None,
                }
            }
            Requested::Unmodeled(what) => {
                let what = format!("{what}: not modeled by the IAM twin");
                eprintln!("IAM twin: denied {what}");
                return IamVerdict {
                    judged: vec![what.clone()],
                    denial: Some(Denial {
                        message: format!(
                            "You are not authorized to perform this operation. {what}"
                        ),
                        what,
                    }),
                };
            }
        };
        let judged = auths.iter().map(|a| a.to_string()).collect();
        let denial = refused(policy, &auths).map(|(auth, decision)| {
            // EC2's message, as it reads in a real denial.
            let why = match decision {
                Decision::ExplicitDeny => {
                    "with an explicit deny in an identity-based policy".to_string()
                }
                _ => format!(
                    "because no identity-based policy allows the {} action",
                    auth.action
                ),
            };
            Denial {
                what: format!("{} on {}", auth.action, auth.resource),
                message: format!(
                    "You are not authorized to perform this operation. User: {principal} is not \
                     authorized to perform: {} on resource: {} {why}",
                    auth.action, auth.resource
                ),
            }
        });
        IamVerdict { judged, denial }
    }
}

// ---------------------------------------------------------------------------
// Just enough XML for the emulator's answers

#[derive(Clone, Debug, Default)]
struct XmlNode {
    name: String,
    text: String,
    children: Vec<XmlNode>,
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl XmlNode {
    /// A synthetic root holding the document's elements.
    fn parse(xml: &str) -> XmlNode {
        let mut stack = vec![XmlNode::default()];
        let mut rest = xml;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            if !text.trim().is_empty() {
                stack.last_mut().unwrap().text.push_str(&xml_unescape(text));
            }
            rest = &rest[lt..];
            if let Some(r) = rest.strip_prefix("<![CDATA[") {
                let end = r.find("]]>").unwrap_or(r.len());
                stack.last_mut().unwrap().text.push_str(&r[..end]);
                rest = r.get(end + 3..).unwrap_or("");
                continue;
            }
            let (skip_to, skip) = if rest.starts_with("<?") {
                ("?>", true)
            } else if rest.starts_with("<!--") {
                ("-->", true)
            } else if rest.starts_with("<!") {
                (">", true)
            } else {
                (">", false)
            };
            let end = rest.find(skip_to).unwrap_or(rest.len() - skip_to.len());
            let tag = &rest[1..end];
            rest = rest.get(end + skip_to.len()..).unwrap_or("");
            if skip {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let node = stack.pop().unwrap();
                assert_eq!(
                    node.name,
                    name.trim(),
                    "IAM twin: malformed XML from the emulator"
                );
                stack.last_mut().unwrap().children.push(node);
                continue;
            }
            let self_closing = tag.ends_with('/');
            let name = tag
                .trim_end_matches('/')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            let node = XmlNode {
                name,
                ..XmlNode::default()
            };
            if self_closing {
                stack.last_mut().unwrap().children.push(node);
            } else {
                stack.push(node);
            }
        }
        while stack.len() > 1 {
            let node = stack.pop().unwrap();
            stack.last_mut().unwrap().children.push(node);
        }
        stack.pop().unwrap()
    }

    fn child(&self, name: &str) -> Option<&XmlNode> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlNode> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first descendant named `name`, depth first.
    fn find(&self, name: &str) -> Option<&XmlNode> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// Every descendant named `name` (not looking inside a match).
    fn find_all(&self, name: &str) -> Vec<&XmlNode> {
        let mut out = Vec::new();
        for c in &self.children {
            if c.name == name {
                out.push(c);
            } else {
                out.extend(c.find_all(name));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }

    /// An account held in maps, for the request model.
    #[derive(Default)]
    struct Fake {
        tags: BTreeMap<(String, String), Tags>,
        instances: BTreeMap<String, InstanceFacts>,
    }

    impl Fake {
        fn with(mut self, region: &str, id: &str, tags: &[(&str, &str)]) -> Fake {
            self.tags.insert(
                (region.into(), id.into()),
                tags.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            self
        }
        fn with_instance(mut self, id: &str, root: &str, volumes: &[(&str, &str)]) -> Fake {
            self.instances.insert(
                id.into(),
                InstanceFacts {
                    tags: Tags::new(),
                    root_device: Some(root.into()),
                    volumes: volumes
                        .iter()
                        .map(|(d, v)| (d.to_string(), v.to_string()))
                        .collect(),
                },
            );
            self
        }
    }

    impl Ec2State for Fake {
        fn tags(&self, region: &str, id: &str) -> Option<Tags> {
            if let Some(i) = self.instances.get(id) {
                return Some(i.tags.clone());
            }
            self.tags.get(&(region.into(), id.into())).cloned()
        }
        fn instance(&self, _region: &str, id: &str) -> Option<InstanceFacts> {
            self.instances.get(id).cloned()
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn auth(action: &str, resource: &str, context: Context) -> Authorization {
        Authorization {
            action: action.into(),
            resource: resource.into(),
            context,
        }
    }

    fn judge(
        policy: &str,
        action: &str,
        p: &[(&str, &str)],
        state: &Fake,
    ) -> Result<Vec<String>, String> {
        let policy = Policy::parse(policy);
        match authorizations(action, &params(p), &scope(), state) {
            Requested::Judge(auths) => match refused(&policy, &auths) {
                None => Ok(auths.iter().map(|a| a.to_string()).collect()),
                Some((a, d)) => Err(format!("{d:?} {a}")),
            },
            other => panic!("{other:?}"),
        }
    }

    fn one(statement: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#)
    }

    const SNAP: &str = "arn:aws:ec2:us-east-1::snapshot/snap-1";

    #[test]
    fn allow_implicit_deny_and_explicit_deny() {
        let allow = r#"{"Effect":"Allow","Action":"ec2:DeleteSnapshot","Resource":"*"}"#;
        let deny = r#"{"Effect":"Deny","Action":"ec2:*","Resource":"arn:aws:ec2:*::snapshot/*"}"#;
        let a = auth("ec2:DeleteSnapshot", SNAP, Context::default());
        assert_eq!(Policy::parse(&one(allow)).evaluate(&a), Decision::Allow);
        let other = auth("ec2:CreateTags", SNAP, Context::default());
        assert_eq!(
            Policy::parse(&one(allow)).evaluate(&other),
            Decision::ImplicitDeny
        );
        let both = Policy::parse(&one(&format!("{allow},{deny}")));
        assert_eq!(both.evaluate(&a), Decision::ExplicitDeny);
        // A single statement object is a policy too.
        let single = format!(r#"{{"Version":"2012-10-17","Statement":{allow}}}"#);
        assert_eq!(Policy::parse(&single).evaluate(&a), Decision::Allow);
    }

    #[test]
    fn actions_match_case_insensitively_with_wildcards() {
        let p = Policy::parse(&one(
            r#"{"Effect":"Allow","Action":["EC2:describe*","ec2:?reateTags"],"Resource":"*"}"#,
        ));
        for action in [
            "ec2:DescribeSnapshots",
            "ec2:DescribeRegions",
            "ec2:CreateTags",
        ] {
            assert_eq!(
                p.evaluate(&auth(action, "*", Context::default())),
                Decision::Allow,
                "{action}"
            );
        }
        assert_eq!(
            p.evaluate(&auth("ec2:DeleteSnapshot", "*", Context::default())),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn resources_match_case_sensitively_within_arn_segments() {
        assert!(wildcard("arn:aws:ec2:*::snapshot/*", SNAP, true));
        assert!(wildcard(
            "arn:*:ec2:*::snapshot/*",
            "arn:aws-cn:ec2:cn-north-1::snapshot/*",
            true
        ));
        assert!(wildcard(
            "arn:aws:ec2:*:*:volume/*",
            "arn:aws:ec2:us-east-1:123456789012:volume/vol-1",
            true
        ));
        // A snapshot ARN has no account, and a volume pattern is no snapshot.
        assert!(wildcard("arn:aws:ec2:*:*:snapshot/*", SNAP, true));
        assert!(!wildcard("arn:aws:ec2:*:*:volume/*", SNAP, true));
        assert!(
            !wildcard("arn:aws:ec2:*::Snapshot/*", SNAP, true),
            "case-sensitive"
        );
        // `*` inside a segment stays within it; at a segment's end it may cross.
        assert!(!wildcard(
            "arn:aws:ec2:us-*1::snapshot/*",
            "arn:aws:ec2:us-east:1::snapshot/s",
            true
        ));
        assert!(wildcard("arn:aws:ec2:*", SNAP, true));
        assert!(wildcard(
            "arn:aws:ec2:us-east-?::snapshot/snap-?",
            SNAP,
            true
        ));
        assert!(!wildcard(
            "arn:aws:ec2:us-east-1?:snapshot/snap-1",
            "arn:aws:ec2:us-east-1::snapshot/snap-1",
            true
        ));
        // Describe* calls are judged against "*": an ARN pattern never matches it.
        assert!(!wildcard("arn:aws:ec2:*:*:instance/*", "*", true));
        assert!(wildcard("*", "*", true));
    }

    #[test]
    fn string_operators_and_missing_keys() {
        let ctx = Context::default().with("aws:RequestTag/ebsnap:job", &["default"]);
        let empty = Context::default();
        let cond = |op: &str, key: &str, values: &str| {
            Policy::parse(&one(&format!(
                r#"{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{{"{op}":{{"{key}":{values}}}}}}}"#
            )))
        };
        let allowed =
            |p: &Policy, c: &Context| p.evaluate(&auth("ec2:X", "*", c.clone())) == Decision::Allow;
        let key = "aws:RequestTag/ebsnap:job";
        // Multiple values OR; values are case-sensitive, keys are not.
        assert!(allowed(
            &cond("StringEquals", key, r#"["other","default"]"#),
            &ctx
        ));
        assert!(allowed(
            &cond("StringEquals", "AWS:REQUESTTAG/EBSNAP:JOB", r#""default""#),
            &ctx
        ));
        assert!(!allowed(&cond("StringEquals", key, r#""Default""#), &ctx));
        // A missing key: StringEquals false; StringNotEquals true ([IAM-COND]).
        assert!(!allowed(&cond("StringEquals", key, r#""default""#), &empty));
        assert!(allowed(
            &cond("StringNotEquals", key, r#""default""#),
            &empty
        ));
        // Negated operators NOR their values.
        assert!(!allowed(
            &cond("StringNotEquals", key, r#"["other","default"]"#),
            &ctx
        ));
        assert!(allowed(
            &cond("StringNotEquals", key, r#"["other","hourly"]"#),
            &ctx
        ));
        // StringLike / StringNotLike.
        assert!(allowed(&cond("StringLike", key, r#""def*""#), &ctx));
        assert!(allowed(&cond("StringLike", key, r#""d?fault""#), &ctx));
        assert!(!allowed(&cond("StringLike", key, r#""D*""#), &ctx));
        assert!(!allowed(&cond("StringLike", key, r#""*""#), &empty));
        assert!(!allowed(&cond("StringNotLike", key, r#""def*""#), &ctx));
        assert!(allowed(&cond("StringNotLike", key, r#""def*""#), &empty));
    }

    #[test]
    fn null_bool_and_arn_operators() {
        let cond = |op: &str, key: &str, values: &str| {
            Policy::parse(&one(&format!(
                r#"{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{{"{op}":{{"{key}":{values}}}}}}}"#
            )))
        };
        let allowed =
            |p: &Policy, c: Context| p.evaluate(&auth("ec2:X", "*", c)) == Decision::Allow;
        let tagged = Context::default().with("ec2:ResourceTag/ebsnap:restored-from", &["snap-1"]);
        let present = cond("Null", "ec2:ResourceTag/ebsnap:restored-from", r#""false""#);
        let absent = cond("Null", "ec2:ResourceTag/ebsnap:restored-from", "true");
        assert!(allowed(&present, tagged.clone()));
        assert!(!allowed(&present, Context::default()));
        assert!(!allowed(&absent, tagged));
        assert!(allowed(&absent, Context::default()));
        // Bool (a JSON boolean is its string), false when the key is missing.
        let secure = Context::default().with("aws:SecureTransport", &["true"]);
        assert!(allowed(
            &cond("Bool", "aws:SecureTransport", "true"),
            secure.clone()
        ));
        assert!(!allowed(
            &cond("Bool", "aws:SecureTransport", r#""false""#),
            secure
        ));
        assert!(
            !allowed(&cond("Bool", "ec2:Region", "true"), Context::default()),
            "missing key"
        );
        let arn = Context::default().with(
            "aws:SourceArn",
            &["arn:aws:ec2:us-east-1:123456789012:volume/vol-1"],
        );
        // ArnLike: each of the six components on its own.
        assert!(allowed(
            &cond("ArnLike", "aws:SourceArn", r#""arn:aws:ec2:*:*:volume/*""#),
            arn.clone()
        ));
        assert!(allowed(
            &cond(
                "ArnEquals",
                "aws:SourceArn",
                r#""arn:aws:ec2:us-east-?:*:volume/vol-1""#
            ),
            arn.clone()
        ));
        assert!(!allowed(
            &cond(
                "ArnLike",
                "aws:SourceArn",
                r#""arn:aws:ec2:*:*:snapshot/*""#
            ),
            arn.clone()
        ));
        assert!(!allowed(
            &cond("ArnLike", "aws:SourceArn", r#""arn:aws:ec2:*""#),
            arn.clone()
        ));
        assert!(allowed(
            &cond(
                "ArnNotLike",
                "aws:SourceArn",
                r#""arn:aws:ec2:*:*:snapshot/*""#
            ),
            arn
        ));
    }

    #[test]
    fn tag_keys_with_set_operators() {
        let cond = |op: &str, values: &str| {
            Policy::parse(&one(&format!(
                r#"{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{{"{op}":{{"aws:TagKeys":{values}}}}}}}"#
            )))
        };
        let allowed = |p: &Policy, keys: &[&str]| {
            let c = if keys.is_empty() {
                Context::default()
            } else {
                Context::default().with("aws:TagKeys", keys)
            };
            p.evaluate(&auth("ec2:X", "*", c)) == Decision::Allow
        };
        let all = cond("ForAllValues:StringEquals", r#"["ebsnap:job","Name"]"#);
        assert!(allowed(&all, &["ebsnap:job"]));
        assert!(allowed(&all, &["ebsnap:job", "Name"]));
        assert!(!allowed(&all, &["ebsnap:job", "owner"]));
        assert!(allowed(&all, &[]), "ForAllValues holds without keys");
        let any = cond("ForAnyValue:StringEquals", r#"["ebsnap:job"]"#);
        assert!(allowed(&any, &["Name", "ebsnap:job"]));
        assert!(!allowed(&any, &["Name"]));
        assert!(!allowed(&any, &[]), "ForAnyValue fails without keys");
        let none = cond("ForAllValues:StringNotLike", r#"["aws:*"]"#);
        assert!(allowed(&none, &["Name"]));
        assert!(!allowed(&none, &["aws:x", "Name"]));
    }

    #[test]
    fn conditions_and_across_keys_and_operators() {
        let p = Policy::parse(&one(
            r#"{"Effect":"Allow","Action":"ec2:CreateTags","Resource":"*","Condition":{
                "StringEquals":{"ec2:CreateAction":"CreateSnapshot","aws:RequestTag/ebsnap:job":"default"},
                "ForAllValues:StringLike":{"aws:TagKeys":["ebsnap:*","Name"]}}}"#,
        ));
        let base = Context::default()
            .with("ec2:CreateAction", &["CreateSnapshot"])
            .with("aws:RequestTag/ebsnap:job", &["default"])
            .with("aws:TagKeys", &["ebsnap:job", "Name"]);
        assert_eq!(
            p.evaluate(&auth("ec2:CreateTags", "*", base.clone())),
            Decision::Allow
        );
        let wrong = base.clone().with("ec2:CreateAction", &["CopySnapshot"]);
        assert_eq!(
            p.evaluate(&auth("ec2:CreateTags", "*", wrong)),
            Decision::ImplicitDeny
        );
        let extra = base.with("aws:TagKeys", &["ebsnap:job", "owner"]);
        assert_eq!(
            p.evaluate(&auth("ec2:CreateTags", "*", extra)),
            Decision::ImplicitDeny
        );
    }

    #[test]
    #[should_panic(expected = "not supported")]
    fn an_unsupported_operator_panics() {
        Policy::parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEqualsIfExists":{"ec2:Region":"x"}}}"#,
        ));
    }

    #[test]
    #[should_panic(expected = "not supported")]
    fn an_unsupported_element_panics() {
        Policy::parse(&one(
            r#"{"Effect":"Allow","NotAction":"ec2:*","Resource":"*"}"#,
        ));
    }

    #[test]
    #[should_panic(expected = "not modeled")]
    fn an_unmodeled_condition_key_panics_rather_than_allow() {
        let p = Policy::parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"ec2:VolumeType":"io2"}}}"#,
        ));
        p.evaluate(&auth("ec2:X", "*", Context::default()));
    }

    #[test]
    #[should_panic(expected = "multivalued")]
    fn tag_keys_without_a_set_operator_panics() {
        let p = Policy::parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:TagKeys":"Name"}}}"#,
        ));
        p.evaluate(&auth(
            "ec2:X",
            "*",
            Context::default().with("aws:TagKeys", &["Name"]),
        ));
    }

    /// The printed policy's statements for creates, before and after
    /// CreateSnapshots joins TagOnlyWhileCreating's ec2:CreateAction list.
    fn create_policy(tag_on_create: &[&str]) -> String {
        let actions = serde_json::to_string(tag_on_create).unwrap();
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
              {{"Sid":"Discover","Effect":"Allow","Action":["ec2:DescribeInstances","ec2:DescribeSnapshots","ec2:DescribeVolumes"],"Resource":"*"}},
              {{"Sid":"SnapshotAnyInstanceOrVolume","Effect":"Allow","Action":["ec2:CreateSnapshot","ec2:CreateSnapshots"],
                "Resource":["arn:aws:ec2:*:*:instance/*","arn:aws:ec2:*:*:volume/*"]}},
              {{"Sid":"CreateOnlySnapshotsMarkedForThisJob","Effect":"Allow","Action":["ec2:CreateSnapshot","ec2:CreateSnapshots"],
                "Resource":"arn:aws:ec2:*::snapshot/*","Condition":{{"StringEquals":{{"aws:RequestTag/ebsnap:job":"default"}}}}}},
              {{"Sid":"TagOnlyWhileCreating","Effect":"Allow","Action":"ec2:CreateTags","Resource":["arn:aws:ec2:*::snapshot/*","arn:aws:ec2:*:*:volume/*"],
                "Condition":{{"StringEquals":{{"ec2:CreateAction":{actions}}}}}}},
              {{"Sid":"TagOnlyThisJobsSnapshots","Effect":"Allow","Action":"ec2:CreateTags","Resource":"arn:aws:ec2:*::snapshot/*",
                "Condition":{{"StringEquals":{{"ec2:ResourceTag/ebsnap:job":"default"}}}}}},
              {{"Sid":"DeleteOnlyThisJobsSnapshots","Effect":"Allow","Action":"ec2:DeleteSnapshot","Resource":"arn:aws:ec2:*::snapshot/*",
                "Condition":{{"StringEquals":{{"ec2:ResourceTag/ebsnap:job":"default"}}}}}}]}}"#
        )
    }

    fn instance_state() -> Fake {
        Fake::default()
            .with_instance(
                "i-1",
                "/dev/sda1",
                &[
                    ("/dev/sda1", "vol-root"),
                    ("/dev/sdf", "vol-data"),
                    ("/dev/sdg", "vol-skip"),
                ],
            )
            .with("us-east-1", "vol-root", &[])
            .with("us-east-1", "vol-data", &[("Name", "data")])
            .with("us-east-1", "vol-skip", &[])
    }

    const CREATE_SNAPSHOTS: &[(&str, &str)] = &[
        ("InstanceSpecification.InstanceId", "i-1"),
        ("InstanceSpecification.ExcludeBootVolume", "false"),
        ("InstanceSpecification.ExcludeDataVolumeId.1", "vol-skip"),
        ("TagSpecification.1.ResourceType", "snapshot"),
        ("TagSpecification.1.Tag.1.Key", "ebsnap:job"),
        ("TagSpecification.1.Tag.1.Value", "default"),
    ];

    #[test]
    fn create_snapshots_is_judged_per_instance_volume_and_new_snapshot_and_again_as_create_tags() {
        let state = instance_state();
        let judged = judge(
            &create_policy(&[
                "CreateSnapshot",
                "CreateSnapshots",
                "CopySnapshot",
                "CreateVolume",
            ]),
            "CreateSnapshots",
            CREATE_SNAPSHOTS,
            &state,
        )
        .expect("allowed once CreateSnapshots may tag on create");
        let new = "arn:aws:ec2:us-east-1::snapshot/*";
        assert_eq!(
            judged,
            vec![
                "ec2:CreateSnapshots on arn:aws:ec2:us-east-1:123456789012:instance/i-1"
                    .to_string(),
                "ec2:CreateSnapshots on arn:aws:ec2:us-east-1:123456789012:volume/vol-root".into(),
                "ec2:CreateSnapshots on arn:aws:ec2:us-east-1:123456789012:volume/vol-data".into(),
                format!("ec2:CreateSnapshots on {new}"),
                format!("ec2:CreateTags on {new} (ec2:CreateAction=CreateSnapshots)"),
                format!("ec2:CreateSnapshots on {new}"),
                format!("ec2:CreateTags on {new} (ec2:CreateAction=CreateSnapshots)"),
            ],
            "vol-skip is excluded"
        );
        // ExcludeBootVolume leaves the root volume out.
        let mut no_boot = CREATE_SNAPSHOTS.to_vec();
        no_boot[1] = ("InstanceSpecification.ExcludeBootVolume", "true");
        let Requested::Judge(auths) =
            authorizations("CreateSnapshots", &params(&no_boot), &scope(), &state)
        else {
            panic!()
        };
        assert!(
            !auths.iter().any(|a| a.resource.ends_with("vol-root")),
            "{auths:?}"
        );
        assert_eq!(
            auths
                .iter()
                .filter(|a| a.resource.ends_with("volume/vol-data"))
                .count(),
            1
        );
    }

    #[test]
    fn create_snapshots_under_a_tag_on_create_list_without_it_is_denied_as_create_tags() {
        // The policy ebsnap printed before: ec2:CreateAction lists
        // CreateSnapshot, CopySnapshot and CreateVolume, not CreateSnapshots.
        let printed = create_policy(&["CreateSnapshot", "CopySnapshot", "CreateVolume"]);
        let denied = judge(
            &printed,
            "CreateSnapshots",
            CREATE_SNAPSHOTS,
            &instance_state(),
        );
        assert_eq!(
            denied,
            Err("ImplicitDeny ec2:CreateTags on arn:aws:ec2:us-east-1::snapshot/* (ec2:CreateAction=CreateSnapshots)".into())
        );
        // The same create without tags is not judged as CreateTags at all
        // ([EC2-TAG]), but then the job's tag condition fails on the snapshot.
        let untagged = &CREATE_SNAPSHOTS[..3];
        assert_eq!(
            judge(&printed, "CreateSnapshots", untagged, &instance_state()),
            Err("ImplicitDeny ec2:CreateSnapshots on arn:aws:ec2:us-east-1::snapshot/*".into())
        );
        // CreateSnapshot (one volume) was already in the list.
        let single = [
            ("VolumeId", "vol-data"),
            ("TagSpecification.1.ResourceType", "snapshot"),
            ("TagSpecification.1.Tag.1.Key", "ebsnap:job"),
            ("TagSpecification.1.Tag.1.Value", "default"),
        ];
        assert!(judge(&printed, "CreateSnapshot", &single, &instance_state()).is_ok());
    }

    #[test]
    fn tags_judge_existing_resources_by_their_tags_and_new_ones_by_the_request() {
        let state = Fake::default()
            .with("us-east-1", "snap-mine", &[("ebsnap:job", "default")])
            .with("us-east-1", "snap-theirs", &[("ebsnap:job", "other")])
            .with("eu-west-1", "snap-src", &[("ebsnap:job", "default")]);
        let policy = create_policy(&["CreateSnapshots"]);
        let tag = |id: &str| {
            judge(
                &policy,
                "CreateTags",
                &[
                    ("ResourceId.1", id),
                    ("Tag.1.Key", "Name"),
                    ("Tag.1.Value", "x"),
                ],
                &state,
            )
        };
        assert!(tag("snap-mine").is_ok());
        assert_eq!(
            tag("snap-theirs"),
            Err(
                "ImplicitDeny ec2:CreateTags on arn:aws:ec2:us-east-1::snapshot/snap-theirs".into()
            )
        );
        let delete = |id: &str| judge(&policy, "DeleteSnapshot", &[("SnapshotId", id)], &state);
        assert!(delete("snap-mine").is_ok());
        assert!(delete("snap-theirs").is_err());
        // A resource that does not exist is EC2's NotFound, not a denial.
        assert_eq!(
            authorizations(
                "DeleteSnapshot",
                &params(&[("SnapshotId", "snap-gone")]),
                &scope(),
                &state
            ),
            Requested::Unjudged("snap-gone does not exist".into())
        );
        // CopySnapshot: the source in its region by its tags, the copy by the
        // request's, and the copy's tags again as CreateTags.
        let copy = [
            ("SourceRegion", "eu-west-1"),
            ("SourceSnapshotId", "snap-src"),
            ("TagSpecification.1.ResourceType", "snapshot"),
            ("TagSpecification.1.Tag.1.Key", "ebsnap:job"),
            ("TagSpecification.1.Tag.1.Value", "default"),
        ];
        let Requested::Judge(auths) =
            authorizations("CopySnapshot", &params(&copy), &scope(), &state)
        else {
            panic!()
        };
        let shown: Vec<String> = auths.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            shown,
            [
                "ec2:CopySnapshot on arn:aws:ec2:eu-west-1::snapshot/snap-src",
                "ec2:CopySnapshot on arn:aws:ec2:us-east-1::snapshot/*",
                "ec2:CreateTags on arn:aws:ec2:us-east-1::snapshot/* (ec2:CreateAction=CopySnapshot)",
            ]
        );
        assert_eq!(
            auths[0].context.get("ec2:resourcetag/ebsnap:job"),
            Some(&["default".to_string()][..])
        );
        assert_eq!(auths[0].context.get("aws:requesttag/ebsnap:job"), None);
        assert_eq!(
            auths[1].context.get("aws:requesttag/ebsnap:job"),
            Some(&["default".to_string()][..])
        );
        assert_eq!(auths[1].context.get("ec2:createaction"), None);
    }

    #[test]
    fn restores_and_reads() {
        let state = Fake::default()
            .with("us-east-1", "snap-mine", &[("ebsnap:job", "default")])
            .with(
                "us-east-1",
                "vol-new",
                &[("ebsnap:restored-from", "snap-mine")],
            )
            .with("us-east-1", "vol-plain", &[])
            .with_instance("i-1", "/dev/sda1", &[]);
        let policy = r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
          {"Effect":"Allow","Action":"ec2:CreateVolume","Resource":"arn:aws:ec2:*::snapshot/*",
            "Condition":{"StringEquals":{"ec2:ResourceTag/ebsnap:job":"default"}}},
          {"Effect":"Allow","Action":"ec2:CreateVolume","Resource":"arn:aws:ec2:*:*:volume/*",
            "Condition":{"Null":{"aws:RequestTag/ebsnap:restored-from":"false"}}},
          {"Effect":"Allow","Action":"ec2:CreateTags","Resource":"arn:aws:ec2:*:*:volume/*",
            "Condition":{"StringEquals":{"ec2:CreateAction":"CreateVolume"}}},
          {"Effect":"Allow","Action":"ec2:AttachVolume","Resource":"arn:aws:ec2:*:*:volume/*",
            "Condition":{"Null":{"ec2:ResourceTag/ebsnap:restored-from":"false"}}},
          {"Effect":"Allow","Action":"ec2:AttachVolume","Resource":"arn:aws:ec2:*:*:instance/*"}]}"#;
        let create = [
            ("SnapshotId", "snap-mine"),
            ("AvailabilityZone", "us-east-1a"),
            ("TagSpecification.1.ResourceType", "volume"),
            ("TagSpecification.1.Tag.1.Key", "ebsnap:restored-from"),
            ("TagSpecification.1.Tag.1.Value", "snap-mine"),
        ];
        assert_eq!(
            judge(policy, "CreateVolume", &create, &state),
            Ok(vec![
                "ec2:CreateVolume on arn:aws:ec2:us-east-1::snapshot/snap-mine".into(),
                "ec2:CreateVolume on arn:aws:ec2:us-east-1:123456789012:volume/*".into(),
                "ec2:CreateTags on arn:aws:ec2:us-east-1:123456789012:volume/* (ec2:CreateAction=CreateVolume)".into(),
            ])
        );
        assert!(
            judge(policy, "CreateVolume", &create[..2], &state).is_err(),
            "untagged"
        );
        let attach = |v: &str| {
            judge(
                policy,
                "AttachVolume",
                &[
                    ("InstanceId", "i-1"),
                    ("VolumeId", v),
                    ("Device", "/dev/sdh"),
                ],
                &state,
            )
        };
        assert!(attach("vol-new").is_ok());
        assert_eq!(
            attach("vol-plain"),
            Err("ImplicitDeny ec2:AttachVolume on arn:aws:ec2:us-east-1:123456789012:volume/vol-plain".into())
        );
        for read in [
            "DescribeInstances",
            "DescribeVolumes",
            "DescribeSnapshots",
            "DescribeRegions",
            "DescribeLockedSnapshots",
            "DescribeSnapshotTierStatus",
        ] {
            assert_eq!(
                judge(policy, read, &[], &state),
                Ok(vec![format!("ec2:{read} on *")])
            );
        }
        // A Describe needs a statement with Resource "*".
        let arns_only = one(
            r#"{"Effect":"Allow","Action":"ec2:Describe*","Resource":"arn:aws:ec2:*:*:instance/*"}"#,
        );
        assert!(judge(&arns_only, "DescribeInstances", &[], &state).is_err());
        // An action with no model is never allowed.
        assert_eq!(
            authorizations("ModifySnapshotAttribute", &params(&[]), &scope(), &state),
            Requested::Unmodeled("ec2:ModifySnapshotAttribute".into())
        );
    }

    #[test]
    fn twin_iam_archive_tier_actions_act_on_the_snapshot_arn_with_its_tags() {
        let state = Fake::default()
            .with("us-east-1", "snap-mine", &[("ebsnap:job", "default")])
            .with("us-east-1", "snap-other", &[("ebsnap:job", "other")]);
        let policy = one(
            r#"{"Effect":"Allow","Action":["ec2:ModifySnapshotTier","ec2:RestoreSnapshotTier"],
                "Resource":"arn:aws:ec2:*::snapshot/*",
                "Condition":{"StringEquals":{"aws:ResourceTag/ebsnap:job":"default"}}}"#,
        );
        for action in ["ModifySnapshotTier", "RestoreSnapshotTier"] {
            assert_eq!(
                judge(&policy, action, &[("SnapshotId", "snap-mine")], &state),
                Ok(vec![format!(
                    "ec2:{action} on arn:aws:ec2:us-east-1::snapshot/snap-mine"
                )])
            );
            assert_eq!(
                judge(&policy, action, &[("SnapshotId", "snap-other")], &state),
                Err(format!(
                    "ImplicitDeny ec2:{action} on arn:aws:ec2:us-east-1::snapshot/snap-other"
                ))
            );
            // No SnapshotId, or one that does not exist: EC2's own error.
            assert!(matches!(
                authorizations(action, &params(&[]), &scope(), &state),
                Requested::Unjudged(_)
            ));
            assert!(matches!(
                authorizations(
                    action,
                    &params(&[("SnapshotId", "snap-gone")]),
                    &scope(),
                    &state
                ),
                Requested::Unjudged(_)
            ));
        }
        // ec2:ResourceTag/ is the same key set.
        let ec2_key = one(
            r#"{"Effect":"Allow","Action":"ec2:ModifySnapshotTier","Resource":"*",
                "Condition":{"StringEquals":{"ec2:ResourceTag/ebsnap:job":"default"}}}"#,
        );
        assert!(judge(
            &ec2_key,
            "ModifySnapshotTier",
            &[("SnapshotId", "snap-mine")],
            &state
        )
        .is_ok());
        // A policy without the action denies it; the describe needs "*".
        let describe_only = one(
            r#"{"Effect":"Allow","Action":["ec2:DescribeSnapshots","ec2:DescribeSnapshotTierStatus"],"Resource":"*"}"#,
        );
        assert_eq!(
            judge(
                &describe_only,
                "ModifySnapshotTier",
                &[("SnapshotId", "snap-mine")],
                &state
            ),
            Err(
                "ImplicitDeny ec2:ModifySnapshotTier on arn:aws:ec2:us-east-1::snapshot/snap-mine"
                    .into()
            )
        );
        assert!(judge(&describe_only, "DescribeSnapshotTierStatus", &[], &state).is_ok());
    }

    #[test]
    fn the_partition_is_the_scopes() {
        let state = Fake::default().with("cn-north-1", "snap-1", &[("ebsnap:job", "default")]);
        let cn = Scope {
            partition: "aws-cn".into(),
            region: "cn-north-1".into(),
            account: "123456789012".into(),
        };
        let Requested::Judge(auths) = authorizations(
            "DeleteSnapshot",
            &params(&[("SnapshotId", "snap-1")]),
            &cn,
            &state,
        ) else {
            panic!()
        };
        assert_eq!(
            auths[0].resource,
            "arn:aws-cn:ec2:cn-north-1::snapshot/snap-1"
        );
        let aws_only = Policy::parse(&one(
            r#"{"Effect":"Allow","Action":"ec2:DeleteSnapshot","Resource":"arn:aws:ec2:*::snapshot/*"}"#,
        ));
        let any = Policy::parse(&one(
            r#"{"Effect":"Allow","Action":"ec2:DeleteSnapshot","Resource":"arn:*:ec2:*::snapshot/*"}"#,
        ));
        assert_eq!(aws_only.evaluate(&auths[0]), Decision::ImplicitDeny);
        assert_eq!(any.evaluate(&auths[0]), Decision::Allow);
    }

    #[test]
    fn emulator_answers_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet><item><instancesSet><item>
<instanceId>i-1</instanceId><rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping>
<item><deviceName>/dev/sda1</deviceName><ebs><volumeId>vol-1</volumeId></ebs></item>
<item><deviceName>/dev/sdf</deviceName><ebs><volumeId>vol-2</volumeId></ebs></item></blockDeviceMapping>
<tagSet><item><key>Name</key><value>a &amp; b</value></item><item><key>empty</key><value/></item></tagSet>
</item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;
        let doc = XmlNode::parse(xml);
        let item = doc.find("instancesSet").unwrap().child("item").unwrap();
        assert_eq!(item.child("instanceId").unwrap().text, "i-1");
        let tags = tag_set(item);
        assert_eq!(tags.get("Name").map(String::as_str), Some("a & b"));
        assert_eq!(tags.get("empty").map(String::as_str), Some(""));
        let devices: Vec<&str> = item
            .child("blockDeviceMapping")
            .unwrap()
            .children_named("item")
            .map(|i| {
                i.child("ebs")
                    .unwrap()
                    .child("volumeId")
                    .unwrap()
                    .text
                    .as_str()
            })
            .collect();
        assert_eq!(devices, ["vol-1", "vol-2"]);
    }
}
