//! Reading ebsnap's JSON report (`--json`): its lists and their entries.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

/// The string field `key` of a report entry.
pub fn str_field<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(Value::as_str)
}

/// The report's list `key` (`created`, `deleted`, `kept`, `failed`, ...);
/// fails the test, with `context`, when the report has none.
pub fn entries<'a>(doc: &'a Value, key: &str, context: &dyn fmt::Display) -> &'a Vec<Value> {
    doc.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("JSON report has no array `{key}`\n{context}"))
}

/// The string field `key` of every entry of `list` that has one.
pub fn ids_of(list: &[Value], key: &str) -> BTreeSet<String> {
    list.iter()
        .filter_map(|e| str_field(e, key))
        .map(str::to_string)
        .collect()
}
