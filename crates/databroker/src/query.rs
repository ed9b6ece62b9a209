//! `Query`: a substring search and a filter expression over records (Pomerium's
//! `pkg/storage/filter.go`), evaluated the same way by every backend.
//!
//! A filter is a JSON object. `$and`, `$or` take lists, `$not` an expression; any other key is a
//! field path (`id`, `$index`, or a dotted path into the data) whose value is either a value to
//! compare for equality, a list (any of its values), or an object of operators such as
//! `{"$startsWith": "a"}`. `$index` matches records whose `$index.cidr` contains an address; the
//! most specific networks come first.

use crate::record::Record;
use ipnet::IpNet;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// A parsed `Query` request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    pub record_type: String,
    /// Matched, lowercase, against the id and every string in the data.
    pub search: String,
    pub offset: usize,
    /// `None` for no limit.
    pub limit: Option<usize>,
    pub filter: Option<Filter>,
}

/// What a query found: one page and the count of every match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryPage {
    pub records: Vec<Record>,
    pub total_count: usize,
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare { fields: Vec<String>, operator: Operator, value: Value },
}

/// The comparison operators of Pomerium's filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    After,
    Before,
    Contains,
    DoesNotContain,
    DoesNotEqual,
    EndsWith,
    Equals,
    GreaterThan,
    GreaterThanOrEqual,
    IsAnyOf,
    IsEmpty,
    IsNotEmpty,
    LessThan,
    LessThanOrEqual,
    OnOrAfter,
    OnOrBefore,
    StartsWith,
}

impl Operator {
    fn from_key(key: &str) -> Option<Operator> {
        Some(match key {
            "$after" => Operator::After,
            "$before" => Operator::Before,
            "$contains" => Operator::Contains,
            "$doesNotContain" => Operator::DoesNotContain,
            "!=" | "$doesNotEqual" => Operator::DoesNotEqual,
            "$endsWith" => Operator::EndsWith,
            "=" | "==" | "$eq" | "$equals" | "$is" => Operator::Equals,
            ">" => Operator::GreaterThan,
            ">=" => Operator::GreaterThanOrEqual,
            "$isAnyOf" => Operator::IsAnyOf,
            "$isEmpty" => Operator::IsEmpty,
            "$isNotEmpty" => Operator::IsNotEmpty,
            "<" => Operator::LessThan,
            "<=" => Operator::LessThanOrEqual,
            "$onOrAfter" => Operator::OnOrAfter,
            "$onOrBefore" => Operator::OnOrBefore,
            "$startsWith" => Operator::StartsWith,
            _ => return None,
        })
    }
}

/// A filter that cannot be read; the message names the offending key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter: {0}")]
pub struct FilterError(pub String);

impl Filter {
    /// Reads a filter from its JSON form.
    pub fn parse(filter: &Map<String, Value>) -> Result<Filter, FilterError> {
        from_object(&[], filter)
    }
}

fn from_value(path: &[String], value: &Value) -> Result<Filter, FilterError> {
    match value {
        Value::Array(items) => {
            Ok(Filter::Or(items.iter().map(|item| from_value(path, item)).collect::<Result<_, _>>()?))
        }
        Value::Object(object) => from_object(path, object),
        scalar => Ok(Filter::Compare { fields: path.to_vec(), operator: Operator::Equals, value: scalar.clone() }),
    }
}

fn from_object(path: &[String], object: &Map<String, Value>) -> Result<Filter, FilterError> {
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    let mut all = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(value) = object.get(key) else { continue };
        let expression = match key.as_str() {
            "$and" => Filter::And(list(path, key, value)?),
            "$or" => Filter::Or(list(path, key, value)?),
            "$not" => Filter::Not(Box::new(from_value(path, value)?)),
            other => match Operator::from_key(other) {
                Some(operator) => Filter::Compare { fields: path.to_vec(), operator, value: value.clone() },
                None => {
                    let mut nested = path.to_vec();
                    nested.extend(other.split('.').map(str::to_owned));
                    from_value(&nested, value)?
                }
            },
        };
        all.push(expression);
    }
    Ok(if all.len() == 1 { all.pop().unwrap_or(Filter::And(Vec::new())) } else { Filter::And(all) })
}

fn list(path: &[String], key: &str, value: &Value) -> Result<Vec<Filter>, FilterError> {
    let Value::Array(items) = value else {
        return Err(FilterError(format!("`{key}` must be a list")));
    };
    items.iter().map(|item| from_value(path, item)).collect()
}

impl Query {
    /// Whether a (live) record is a result of this query.
    pub fn matches(&self, record: &Record) -> bool {
        record.record_type == self.record_type
            && (self.search.is_empty() || contains_text(record, &self.search.to_lowercase()))
            && self.filter.as_ref().is_none_or(|filter| filter.matches(record))
    }

    /// Orders the matches and cuts the page: the most specific `$index` network first when the
    /// filter looks one up, by id otherwise.
    pub fn page(&self, mut matches: Vec<Record>) -> QueryPage {
        if self.filter.as_ref().is_some_and(Filter::uses_index) {
            matches.sort_by(|a, b| index_prefix(b).cmp(&index_prefix(a)).then_with(|| a.id.cmp(&b.id)));
        } else {
            matches.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let total_count = matches.len();
        let records = matches.into_iter().skip(self.offset).take(self.limit.unwrap_or(usize::MAX)).collect();
        QueryPage { records, total_count }
    }
}

fn contains_text(record: &Record, needle: &str) -> bool {
    fn any_string(value: &Value, needle: &str) -> bool {
        match value {
            Value::String(s) => s.to_lowercase().contains(needle),
            Value::Array(items) => items.iter().any(|item| any_string(item, needle)),
            Value::Object(object) => object.values().any(|item| any_string(item, needle)),
            _ => false,
        }
    }
    record.id.to_lowercase().contains(needle) || record.data.values().any(|value| any_string(value, needle))
}

impl Filter {
    pub fn matches(&self, record: &Record) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(record)),
            Filter::Or(any) => any.iter().any(|f| f.matches(record)),
            Filter::Not(inner) => !inner.matches(record),
            Filter::Compare { fields, operator, value } => compare(record, fields, *operator, value),
        }
    }

    fn uses_index(&self) -> bool {
        match self {
            Filter::And(all) | Filter::Or(all) => all.iter().any(Filter::uses_index),
            Filter::Not(_) => false,
            Filter::Compare { fields, .. } => fields.first().is_some_and(|f| f == "$index"),
        }
    }
}

fn compare(record: &Record, fields: &[String], operator: Operator, expected: &Value) -> bool {
    match fields.first().map(String::as_str) {
        Some("$index") => index_contains(record, expected),
        Some("id") if fields.len() == 1 => apply(operator, Some(&Value::String(record.id.clone())), expected),
        _ => apply(operator, lookup(&record.data, fields), expected),
    }
}

fn lookup<'v>(data: &'v Map<String, Value>, fields: &[String]) -> Option<&'v Value> {
    let (first, rest) = fields.split_first()?;
    let mut value = data.get(first)?;
    for field in rest {
        value = value.as_object()?.get(field)?;
    }
    Some(value)
}

/// A value as Pomerium's filters compare it: as text, numbers without a needless `.0`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The texts a field holds: each element of a list, or the one value.
fn texts(value: Option<&Value>) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(text).collect(),
        Some(one) => vec![text(one)],
    }
}

fn apply(operator: Operator, actual: Option<&Value>, expected: &Value) -> bool {
    let actual_texts = texts(actual);
    let wanted = text(expected);
    match operator {
        Operator::Equals => actual_texts.contains(&wanted),
        Operator::DoesNotEqual => !actual_texts.contains(&wanted),
        Operator::IsAnyOf => {
            let options = texts(Some(expected));
            actual_texts.iter().any(|t| options.contains(t))
        }
        Operator::Contains => actual_texts.iter().any(|t| t.contains(&wanted)),
        Operator::DoesNotContain => !actual_texts.iter().any(|t| t.contains(&wanted)),
        Operator::StartsWith => actual_texts.iter().any(|t| t.starts_with(&wanted)),
        Operator::EndsWith => actual_texts.iter().any(|t| t.ends_with(&wanted)),
        Operator::IsEmpty => actual_texts.iter().all(String::is_empty),
        Operator::IsNotEmpty => actual_texts.iter().any(|t| !t.is_empty()),
        Operator::GreaterThan => ordered(&actual_texts, &wanted, |o| o.is_gt()),
        Operator::GreaterThanOrEqual => ordered(&actual_texts, &wanted, |o| o.is_ge()),
        Operator::LessThan => ordered(&actual_texts, &wanted, |o| o.is_lt()),
        Operator::LessThanOrEqual => ordered(&actual_texts, &wanted, |o| o.is_le()),
        Operator::After => in_time(&actual_texts, &wanted, |o| o.is_gt()),
        Operator::OnOrAfter => in_time(&actual_texts, &wanted, |o| o.is_ge()),
        Operator::Before => in_time(&actual_texts, &wanted, |o| o.is_lt()),
        Operator::OnOrBefore => in_time(&actual_texts, &wanted, |o| o.is_le()),
    }
}

/// Numbers compare as numbers, anything else as text.
fn ordered(actual: &[String], wanted: &str, accept: impl Fn(std::cmp::Ordering) -> bool) -> bool {
    actual.iter().any(|a| {
        let ordering = match (a.parse::<f64>(), wanted.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y),
            _ => Some(a.as_str().cmp(wanted)),
        };
        ordering.is_some_and(&accept)
    })
}

fn in_time(actual: &[String], wanted: &str, accept: impl Fn(std::cmp::Ordering) -> bool) -> bool {
    let Ok(wanted) = wanted.parse::<jiff::Timestamp>() else { return false };
    actual.iter().filter_map(|a| a.parse::<jiff::Timestamp>().ok()).any(|a| accept(a.cmp(&wanted)))
}

/// The network a record is indexed under: `$index.cidr` in its data.
pub fn index_network(data: &Map<String, Value>) -> Option<IpNet> {
    let cidr = data.get("$index")?.get("cidr")?.as_str()?;
    cidr.parse::<IpNet>().ok().or_else(|| cidr.parse::<IpAddr>().ok().map(IpNet::from))
}

fn index_contains(record: &Record, expected: &Value) -> bool {
    let Some(network) = index_network(&record.data) else { return false };
    let wanted = text(expected);
    match wanted.parse::<IpAddr>() {
        Ok(address) => network.contains(&address),
        Err(_) => wanted.parse::<IpNet>().is_ok_and(|inner| network.contains(&inner)),
    }
}

fn index_prefix(record: &Record) -> u8 {
    index_network(&record.data).map_or(0, |n| n.prefix_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, data: Value) -> Record {
        Record::new("t", id, data.as_object().unwrap().clone())
    }

    fn filter(value: Value) -> Filter {
        Filter::parse(value.as_object().unwrap()).unwrap()
    }

    #[test]
    fn equality_on_id_and_data_paths() {
        let r = record("a", json!({"user": {"email": "x@example.com"}, "n": 3, "groups": ["g1", "g2"]}));
        assert!(filter(json!({"id": "a"})).matches(&r));
        assert!(!filter(json!({"id": "b"})).matches(&r));
        assert!(filter(json!({"user.email": "x@example.com"})).matches(&r));
        assert!(filter(json!({"user": {"email": "x@example.com"}})).matches(&r));
        assert!(filter(json!({"n": 3})).matches(&r));
        assert!(filter(json!({"groups": "g2"})).matches(&r));
        assert!(filter(json!({"id": ["b", "a"]})).matches(&r), "a list is any of its values");
    }

    #[test]
    fn logical_operators() {
        let r = record("a", json!({"k": "v"}));
        assert!(filter(json!({"$and": [{"id": "a"}, {"k": "v"}]})).matches(&r));
        assert!(!filter(json!({"$and": [{"id": "a"}, {"k": "w"}]})).matches(&r));
        assert!(filter(json!({"$or": [{"id": "z"}, {"k": "v"}]})).matches(&r));
        assert!(filter(json!({"$not": {"id": "z"}})).matches(&r));
        assert!(!filter(json!({"$not": {"id": "a"}})).matches(&r));
        assert_eq!(
            Filter::parse(json!({"$and": {"id": "a"}}).as_object().unwrap()).unwrap_err().0,
            "`$and` must be a list"
        );
    }

    #[test]
    fn comparison_operators() {
        let r = record("abc", json!({"n": 10, "at": "2026-01-01T00:00:00Z", "empty": ""}));
        assert!(filter(json!({"id": {"$startsWith": "ab"}})).matches(&r));
        assert!(filter(json!({"id": {"$endsWith": "bc"}})).matches(&r));
        assert!(filter(json!({"id": {"$contains": "b"}})).matches(&r));
        assert!(filter(json!({"id": {"$isAnyOf": ["x", "abc"]}})).matches(&r));
        assert!(filter(json!({"id": {"$doesNotEqual": "x"}})).matches(&r));
        assert!(filter(json!({"n": {">": 9}})).matches(&r));
        assert!(!filter(json!({"n": {">": 10}})).matches(&r));
        assert!(filter(json!({"n": {"<=": 10}})).matches(&r));
        assert!(filter(json!({"at": {"$before": "2026-06-01T00:00:00Z"}})).matches(&r));
        assert!(!filter(json!({"at": {"$after": "2026-06-01T00:00:00Z"}})).matches(&r));
        assert!(filter(json!({"empty": {"$isEmpty": true}})).matches(&r));
        assert!(filter(json!({"missing": {"$isEmpty": true}})).matches(&r));
        assert!(filter(json!({"n": {"$isNotEmpty": true}})).matches(&r));
    }

    #[test]
    fn cidr_index_prefers_the_most_specific_network() {
        let wide = record("wide", json!({"$index": {"cidr": "10.0.0.0/8"}}));
        let narrow = record("narrow", json!({"$index": {"cidr": "10.1.0.0/16"}}));
        let other = record("other", json!({"$index": {"cidr": "192.168.0.0/16"}}));
        let query =
            Query { record_type: "t".into(), filter: Some(filter(json!({"$index": "10.1.2.3"}))), ..Query::default() };
        let found: Vec<Record> = [wide, narrow, other].into_iter().filter(|r| query.matches(r)).collect();
        let page = query.page(found);
        let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["narrow", "wide"]);
    }

    #[test]
    fn search_is_case_insensitive_over_strings_and_pages_by_id() {
        let query = Query { record_type: "t".into(), search: "ALICE".into(), offset: 1, limit: Some(1), filter: None };
        let a = record("1", json!({"email": "alice@example.com"}));
        let b = record("2", json!({"nested": {"name": "Alice"}}));
        let c = record("3", json!({"email": "bob@example.com"}));
        assert!(query.matches(&a) && query.matches(&b) && !query.matches(&c));
        let page = query.page(vec![b, a]);
        assert_eq!(page.total_count, 2);
        assert_eq!(page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["2"]);
    }
}
