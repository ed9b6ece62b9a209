//! Where an option is declared: once, with its field, type, default, keys and reader.
//!
//! [`declare!`] takes struct declarations whose every field reads as
//! `name: Type = default, ["key", "key_file"] reader;` and makes from them the struct, its
//! defaults (`declared(..)`, and `Default` when it takes no arguments), the reading of every field
//! (`read_declared`), and the list of the keys declared (`GLOBAL_TYPED`, `ROUTE`,
//! `DOWNSTREAM_MTLS`), which is what the unknown-key warnings and their "did you mean" know.
//!
//! A reader is a function `fn(&mut Reader, keys, &mut FieldType)`: the typed ones here (`string`,
//! `boolean`, `duration`, `list`, `url`, `choice(TABLE)`, ...) or a hand-written one named in the
//! declaration. One defaulting rule for all of them: a key that is absent, `null`, an empty string,
//! or whose value cannot be read (the problem is reported) leaves the declared default; a value
//! read replaces it. Readers that need several fields at once run after the fields, named in the
//! struct's `then [...]`; the fields they fill are declared with the reader [`later`].

use crate::env::Environment;
use crate::material::{Certificates, Crls, Encoding, Material, Precedence, certificates, crls, inline_or_file};
use crate::read::{Field, Sink};
use crate::secret::Secret;
use crate::section::Section;
use ppl::value::Value;
use std::time::Duration;
use url::Url;

/// Declares option structs; see the module's documentation.
macro_rules! declare {
    (
        $(#[$keys_meta:meta])*
        keys $keys:ident, elsewhere [$($extra:literal),* $(,)?];
        $(
            $(#[$meta:meta])*
            struct $name:ident ($($param:ident : $pty:ty),* $(,)?) {
                $(
                    $(#[$fmeta:meta])*
                    $field:ident : $ty:ty = $default:expr, [$($key:literal),* $(,)?] $read:expr;
                )*
            }
            then [$($then:path),* $(,)?];
        )*
    ) => {
        $(#[$keys_meta])*
        pub const $keys: &[&str] = &[$($($($key,)*)*)* $($extra,)*];

        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $name {
                $( $(#[$fmeta])* pub $field: $ty, )*
            }

            impl $name {
                /// Every option at its declared default.
                pub(crate) fn declared($($param: $pty),*) -> $name {
                    $name { $($field: $default,)* }
                }
            }

            impl crate::declare::Declared for $name {
                fn read_declared(&mut self, reader: &mut crate::declare::Reader<'_>) {
                    $( ($read)(reader, &[$($key),*], &mut self.$field); )*
                    $( $then(reader, self); )*
                }
            }

            declare!(@default $name ($($param)*));
        )*
    };
    (@default $name:ident ()) => {
        impl Default for $name {
            fn default() -> $name {
                $name::declared()
            }
        }
    };
    (@default $name:ident ($($param:ident)+)) => {};
}

pub(crate) use declare;

/// A struct made by [`declare!`].
pub(crate) trait Declared {
    /// Reads every declared field, then runs the struct's `then` readers.
    fn read_declared(&mut self, reader: &mut Reader<'_>);
}

/// The typed reader: the fields of one object of options (the top level, `downstream_mtls`, a
/// route), where problems go, and the environment `*_file` options are read through.
pub(crate) struct Reader<'a> {
    pub section: &'a Section,
    pub sink: &'a mut Sink,
    pub env: &'a dyn Environment,
}

impl Reader<'_> {
    /// The field of `key`, unless it is absent or `null`.
    pub fn field(&self, key: &str) -> Option<Field> {
        self.section.get(key).cloned()
    }

    pub fn with<T>(&mut self, key: &str, read: impl FnOnce(&Field, &mut Sink) -> Option<T>) -> Option<T> {
        let field = self.section.get(key)?;
        read(field, self.sink)
    }

    /// A string; the empty string counts as not set.
    pub fn string(&mut self, key: &str) -> Option<String> {
        self.with(key, Field::string).filter(|s| !s.is_empty())
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        self.with(key, Field::bool)
    }

    pub fn list(&mut self, key: &str) -> Option<Vec<String>> {
        self.with(key, Field::list).map(|items| items.into_iter().map(|item| item.value).collect())
    }

    pub fn url(&mut self, key: &str) -> Option<Url> {
        self.with(key, crate::options::global_url)
    }

    pub fn material(
        &mut self,
        inline: &str,
        file: &str,
        encoding: Encoding,
        precedence: Precedence,
    ) -> Option<Material> {
        let (inline, file) = (self.field(inline), self.field(file));
        inline_or_file(inline.as_ref(), file.as_ref(), encoding, precedence, self.env, self.sink)
    }
}

/// The keys a reader is given, as declared.
pub(crate) type Keys<'k> = &'k [&'static str];

/// The one key of a single-key option.
pub(crate) fn key(keys: Keys<'_>) -> &'static str {
    keys.first().copied().unwrap_or_default()
}

/// Reads a nested declared struct (its own keys are declared with it).
pub(crate) fn nested<T: Declared>(r: &mut Reader<'_>, _: Keys<'_>, slot: &mut T) {
    slot.read_declared(r);
}

/// Read by a reader of the struct's `then [...]` list, or outside the declared structs (the
/// comment at the field says which).
pub(crate) fn later<T>(_: &mut Reader<'_>, _: Keys<'_>, _: &mut T) {}

/// Replaces the default with what `read` found, if anything.
pub(crate) fn set<T, S: From<T>>(slot: &mut S, value: Option<T>) {
    if let Some(value) = value {
        *slot = value.into();
    }
}

pub(crate) fn string<S: From<String>>(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S) {
    set(slot, r.string(key(keys)));
}

pub(crate) fn boolean<S: From<bool>>(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S) {
    set(slot, r.bool(key(keys)));
}

pub(crate) fn duration<S: From<Duration>>(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S) {
    set(slot, r.with(key(keys), Field::duration));
}

pub(crate) fn list<S: From<Vec<String>>>(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S) {
    set(slot, r.list(key(keys)));
}

pub(crate) fn url<S: From<Url>>(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S) {
    set(slot, r.url(key(keys)));
}

pub(crate) fn unsigned<S: From<u32>>(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S) {
    set(slot, r.with(key(keys), Field::u32));
}

/// An integer within `min..=max`.
pub(crate) fn integer<S: From<i64>>(min: i64, max: i64) -> impl Fn(&mut Reader<'_>, Keys<'_>, &mut S) {
    move |r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S| set(slot, r.with(key(keys), |f, s| f.integer(s, min, max)))
}

/// A string kept secret (never shown by `Debug`).
pub(crate) fn secret(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Secret>) {
    set(slot, r.string(key(keys)).map(Secret::new));
}

/// The value as written.
pub(crate) fn value(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Value>) {
    set(slot, r.field(key(keys)).map(|field| field.value));
}

/// One of `table`'s names, compared case-insensitively.
pub(crate) fn choice<T: Copy, S: From<T>>(
    table: &'static [(&'static str, T)],
) -> impl Fn(&mut Reader<'_>, Keys<'_>, &mut S) {
    move |r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S| {
        set(slot, r.with(key(keys), |field, sink| field.choice(sink, table, true)));
    }
}

/// One of `table`'s names, exactly as written there.
pub(crate) fn exact_choice<T: Copy, S: From<T>>(
    table: &'static [(&'static str, T)],
) -> impl Fn(&mut Reader<'_>, Keys<'_>, &mut S) {
    move |r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut S| {
        set(slot, r.with(key(keys), |field, sink| field.choice(sink, table, false)));
    }
}

/// Certificates inline (base64 of PEM, the first key) or from a file (the second), with
/// `precedence` when both are set.
pub(crate) fn certificates_in(precedence: Precedence) -> impl Fn(&mut Reader<'_>, Keys<'_>, &mut Option<Certificates>) {
    move |r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Certificates>| {
        let &[inline, file] = keys else { return };
        let material = r.material(inline, file, Encoding::Base64, precedence);
        set(slot, material.and_then(|m| certificates(&m, r.sink)));
    }
}

/// CRLs inline (base64 of PEM) or from a file, not both.
pub(crate) fn crls_in(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Crls>) {
    let &[inline, file] = keys else { return };
    let material = r.material(inline, file, Encoding::Base64, Precedence::Exclusive);
    set(slot, material.and_then(|m| crls(&m, r.sink)));
}

/// A secret written inline (the first key) or in a file (the second, which wins).
pub(crate) fn secret_or_file(r: &mut Reader<'_>, keys: Keys<'_>, slot: &mut Option<Secret>) {
    let &[inline, file] = keys else { return };
    set(slot, r.material(inline, file, Encoding::Text, Precedence::File).map(|m| Secret::new(m.bytes)));
}
