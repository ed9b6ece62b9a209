//! An object of options as Pomerium reads it: the keys written in the file, each possibly replaced
//! by the environment variable of the same name upper-cased (`bindEnvs`: the environment wins).
//! Unknown keys are warnings with a suggestion; removed keys are errors saying what replaced them.

use crate::diagnostic::{NotSupported, Origin, Refused, RemovedOption, UnknownOption};
use crate::env::Environment;
use crate::keys;
use crate::read::{Field, Sink};
use crate::support::Support;
use ppl::value::Entry;
use std::collections::BTreeMap;

/// The known options of one object, after the environment has been applied.
#[derive(Debug, Default)]
pub(crate) struct Section {
    fields: BTreeMap<String, Field>,
}

/// What a section accepts and where its environment variables are.
pub(crate) struct Schema<'a> {
    /// The name of the object in messages (`downstream_mtls`), empty for the top level.
    pub path: &'a str,
    pub known: &'a [&'a [&'a str]],
    pub removed: &'a [(&'static str, &'static str)],
    /// `Some("")` for the top level, `Some("DOWNSTREAM_MTLS_")` for a nested object.
    pub env_prefix: Option<&'a str>,
    /// Keys the environment does not override here (they have their own variables, or none).
    pub env_exempt: &'a [&'a str],
}

impl Schema<'_> {
    fn is_known(&self, key: &str) -> bool {
        self.known.iter().any(|list| list.contains(&key))
    }

    fn qualified(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }
}

impl Section {
    pub fn read(
        schema: &Schema<'_>,
        entries: &[Entry],
        origin: &Origin,
        env: &dyn Environment,
        sink: &mut Sink,
    ) -> Section {
        let mut fields = BTreeMap::new();
        for entry in entries {
            if schema.is_known(&entry.key) {
                fields.insert(entry.key.clone(), Field::new(schema.qualified(&entry.key), entry, origin));
            } else {
                report_unknown(schema, entry, origin, sink);
            }
        }
        if let Some(prefix) = schema.env_prefix {
            for key in schema.known.iter().flat_map(|list| list.iter()) {
                if schema.env_exempt.contains(key) {
                    continue;
                }
                let var = keys::env_name(prefix, key);
                // viper ignores variables set to the empty string.
                if let Some(text) = env.var(&var).filter(|text| !text.is_empty()) {
                    fields.insert((*key).to_owned(), Field::from_env(&schema.qualified(key), &var, &text));
                }
            }
        }
        for (key, field) in &fields {
            report_unsupported(&schema.qualified(key), field, sink);
        }
        Section { fields }
    }

    /// A section of fields already collected (a route's).
    pub fn from_fields(fields: BTreeMap<String, Field>) -> Section {
        Section { fields }
    }

    /// The field of `key`, `null` included.
    pub fn entry(&self, key: &str) -> Option<&Field> {
        self.fields.get(key)
    }

    pub fn get(&self, key: &str) -> Option<&Field> {
        self.fields.get(key).filter(|field| !field.is_null())
    }

    /// Every field whose key is in `keys`, in key order (the options this crate keeps as written).
    pub fn raw(&self, keys: &[&str]) -> BTreeMap<String, ppl::value::Value> {
        self.fields
            .iter()
            .filter(|(key, field)| keys.contains(&key.as_str()) && !field.is_null())
            .map(|(key, field)| (key.clone(), field.value.clone()))
            .collect()
    }
}

/// An option the server does not act on (`support::UNSUPPORTED`), unless its value is "off".
pub(crate) fn report_unsupported(qualified: &str, field: &Field, sink: &mut Sink) {
    let Some(support) = crate::support::lookup(qualified) else { return };
    if crate::support::is_off(&field.value) {
        return;
    }
    let (option, span) = (qualified.to_owned(), field.key_span.into());
    match support {
        Support::Warned(reason) => sink.warning(&field.origin, NotSupported { option, reason, span }),
        Support::Refused(reason) => sink.error(&field.origin, Refused { option, reason, span }),
    }
}

/// [`report_unsupported`] for the route option `key` (`routes.<key>`), without a field or the
/// qualified name made unless the option is in the table: every route key of every route is
/// looked up.
pub(crate) fn report_unsupported_route(
    key: &str,
    key_span: ppl::Span,
    value: &ppl::value::Value,
    origin: &Origin,
    sink: &mut Sink,
) {
    let Some(support) = crate::support::lookup_route(key) else { return };
    if crate::support::is_off(value) {
        return;
    }
    let (option, span) = (format!("routes.{key}"), key_span.into());
    match support {
        Support::Warned(reason) => sink.warning(origin, NotSupported { option, reason, span }),
        Support::Refused(reason) => sink.error(origin, Refused { option, reason, span }),
    }
}

fn report_unknown(schema: &Schema<'_>, entry: &Entry, origin: &Origin, sink: &mut Sink) {
    let option = schema.qualified(&entry.key);
    if let Some(help) = keys::removed(schema.removed, &entry.key) {
        sink.error(origin, RemovedOption { option, span: entry.key_span.into(), help: help.to_owned() });
        return;
    }
    let candidates: Vec<&str> = schema.known.iter().flat_map(|list| list.iter().copied()).collect();
    let help = ppl::suggest::did_you_mean(&entry.key, &candidates).or_else(|| {
        (schema.path.is_empty() && keys::ROUTE.contains(&entry.key.as_str()))
            .then(|| format!("`{}` is a route option; put it in a route under `routes:`", entry.key))
    });
    sink.warning(origin, UnknownOption { option, span: entry.key_span.into(), help });
}
