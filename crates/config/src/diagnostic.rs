//! Errors and warnings about a configuration, in the style of `ppl`'s: one enum of structs, each
//! with a stable code, a lowercase message, a labelled span and help. Problems in a route's
//! embedded policy are `ppl`'s own diagnostics, wrapped, with spans into the config file.
//!
//! A problem is [`Located`]: its span points into the config file, or into the value of the
//! environment variable the option came from ([`Origin`]). Every code is listed in
//! `docs/diagnostics.md`; a test keeps the two in step.

use miette::{Diagnostic, SourceSpan};
use ppl::Span;
use ppl::value::Kind;
use thiserror::Error;

/// Where a diagnostic's span points: into the config file, or into an environment variable's value
/// (for `POLICY` and `ROUTES`, into the base64-decoded text).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    File,
    Env(String),
}

impl Origin {
    /// `$NAME` for a variable; `None` for the file, whose name the caller knows.
    pub fn variable(&self) -> Option<&str> {
        match self {
            Origin::File => None,
            Origin::Env(name) => Some(name),
        }
    }
}

/// A diagnostic and the text its spans point into.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    pub origin: Origin,
    pub diagnostic: T,
}

fn to_span(span: SourceSpan) -> Span {
    Span::new(span.offset(), span.offset() + span.len())
}

/// Defines a diagnostic enum over structs with a primary `span`, plus a variant for `ppl`'s own.
macro_rules! diagnostic_enum {
    ($(#[$meta:meta])* pub enum $name:ident ($ppl:ty) { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
        #[non_exhaustive]
        pub enum $name {
            /// A problem in a route's embedded policy, or in reading the document, as `ppl` reports it.
            #[error(transparent)]
            #[diagnostic(transparent)]
            Policy($ppl),
            $(
                #[error(transparent)]
                #[diagnostic(transparent)]
                $variant($variant),
            )+
        }

        impl $name {
            /// The primary span: where the problem is.
            pub fn span(&self) -> Span {
                match self {
                    $name::Policy(inner) => inner.span(),
                    $($name::$variant(inner) => to_span(inner.span),)+
                }
            }

            /// The stable code, such as `config::route::bad_url`.
            pub fn code_str(&self) -> String {
                Diagnostic::code(self).map(|code| code.to_string()).unwrap_or_default()
            }
        }

        impl From<$ppl> for $name {
            fn from(inner: $ppl) -> $name {
                $name::Policy(inner)
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(inner: $variant) -> $name {
                    $name::$variant(inner)
                }
            }
        )+
    };
}

diagnostic_enum! {
    /// A reason the configuration cannot be used.
    pub enum Error(ppl::Error) {
        TooLarge, NotObject, RouteList, KubernetesManifest, WrongType, RemovedOption, BadUrl, BadDuration, UnknownValue, BadNumber,
        BadSecret, BadPem, UnreadableFile, Conflict, Missing, BadRegex, InvalidValue, BadEnv,
        RouteBadUrl, FromPath, FromScheme, NoAction, SeveralActions, MixedWeights, BadWeight,
        MixedSchemes, RedirectCode, PublicWithAllowLists, AnyUserWithAllowLists, DuplicateId,
        TooManyDependsOn, Refused, SchemeNotServed, UnsupportedValue,
    }
}

diagnostic_enum! {
    /// Something Pomerium accepts that is probably not what was meant.
    pub enum Warning(ppl::Warning) {
        UnknownOption, DeprecatedOption, IgnoredOption, BareDuration, ShadowedRoute, HeaderTemplate,
        AllowsNothing, HttpFrom, NoPort, DevelopmentProvider, HostedAuthenticate, JwtBearerFormat,
        NotSupported, AutocertWildcard,
    }
}

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the configuration is larger than the limit of {limit} bytes")]
#[diagnostic(
    code(config::document::too_large),
    help("no configuration needs this much text; look for a file given by mistake")
)]
pub struct TooLarge {
    pub(crate) limit: usize,
    #[label("the configuration starts here")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a configuration must be an object of options, found {found}")]
#[diagnostic(
    code(config::document::not_object),
    help("start the file with options such as `authenticate_service_url: https://authenticate.example.com`")
)]
pub struct NotObject {
    pub(crate) found: Kind,
    #[label("expected an object")]
    pub(crate) span: SourceSpan,
}

/// A file that is a list of routes: the routes of a configuration go under `routes:`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this file is a bare list of routes, not a configuration")]
#[diagnostic(
    code(config::document::route_list),
    help(
        "a configuration is an object of options: put the list under a `routes:` key (write `routes:` on the \
         first line and indent the list under it), or give it base64-encoded in the `ROUTES` variable"
    )
)]
pub struct RouteList {
    #[label("a list of routes")]
    pub(crate) span: SourceSpan,
}

/// A Kubernetes manifest (`apiVersion` and `kind` at the top), not a configuration: its options,
/// if any, are in a field of it, and reading it as options would report every field as unknown.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this file is a Kubernetes manifest (`kind: {kind}`), not a Pomerium configuration")]
#[diagnostic(code(config::document::kubernetes_manifest))]
pub struct KubernetesManifest {
    pub(crate) kind: String,
    #[help]
    pub(crate) help: String,
    #[label("a Kubernetes manifest")]
    pub(crate) span: SourceSpan,
}

impl KubernetesManifest {
    pub(crate) fn help_for(kind: &str) -> String {
        match kind {
            "ConfigMap" | "Secret" => "a configuration carried in a ConfigMap or Secret is one of its `data` (or \
                                        `stringData`) entries: save that entry to a file and check the file"
                .to_owned(),
            "Ingress" => "an Ingress becomes routes through the ingress controller: see them with \
                          `pomerium-ingress-controller translate <file>`"
                .to_owned(),
            _ => "check the Pomerium configuration itself (a `config.yaml` of options), not the manifest that \
                  deploys it"
                .to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options (global and per route)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` must be {expected}, found {found}")]
#[diagnostic(code(config::option::wrong_type))]
pub struct WrongType {
    pub(crate) option: String,
    pub(crate) expected: &'static str,
    pub(crate) found: Kind,
    #[label("{found}")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `config option was removed` (an error that stops startup), with a link.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` was removed from pomerium")]
#[diagnostic(code(config::option::removed))]
pub struct RemovedOption {
    pub(crate) option: String,
    #[label("no longer supported")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: String,
}

/// An option Pomerium acts on that this server does not, and refuses rather than ignore
/// (`crate::support::UNSUPPORTED`).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is refused: {reason}")]
#[diagnostic(
    code(config::option::refused),
    help("remove it (the server will not start while it is set); README.md lists what is supported")
)]
pub struct Refused {
    pub(crate) option: String,
    pub(crate) reason: &'static str,
    #[label("not supported here")]
    pub(crate) span: SourceSpan,
}

/// A value Pomerium removed (`databroker_storage_type: redis`) or that this server does not
/// support (`databroker_storage_type: file`).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}: {text}` {reason}")]
#[diagnostic(code(config::option::unsupported_value))]
pub struct UnsupportedValue {
    pub(crate) option: String,
    pub(crate) text: String,
    pub(crate) reason: &'static str,
    #[label("not supported")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: String,
}

/// Pomerium: `config: bad authenticate-url <u> : <reason>`, and the like.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is not a valid url: {reason}")]
#[diagnostic(code(config::option::bad_url))]
pub struct BadUrl {
    pub(crate) option: String,
    pub(crate) reason: String,
    #[label("this url")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Go's `time.ParseDuration` errors: `time: invalid duration "<s>"`, `time: unknown unit ...`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a duration: {reason}")]
#[diagnostic(
    code(config::option::bad_duration),
    help("write a duration such as `30s`, `1h30m`, `500ms` or `0`; the units are `ns`, `us`, `ms`, `s`, `m` and `h`")
)]
pub struct BadDuration {
    pub(crate) text: String,
    pub(crate) reason: String,
    #[label("in `{option}`")]
    pub(crate) span: SourceSpan,
    pub(crate) option: String,
}

/// Pomerium: `config: <s> is an invalid service type`, `config: unknown databroker storage backend
/// type`, `config: invalid cookie_same_site: ...`, and the other enumerations.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a valid value of `{option}`")]
#[diagnostic(code(config::option::unknown_value))]
pub struct UnknownValue {
    pub(crate) option: String,
    pub(crate) text: String,
    #[label("not one of the values `{option}` takes")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a valid number for `{option}`: {reason}")]
#[diagnostic(code(config::option::bad_number))]
pub struct BadNumber {
    pub(crate) option: String,
    pub(crate) text: String,
    pub(crate) reason: String,
    #[label("this number")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `config: invalid shared secret: shared secret contains whitespace`, `illegal base64
/// data at input byte <n>`; a key of the wrong length fails later, when the cipher is made.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is not a valid key: {reason}")]
#[diagnostic(code(config::option::bad_secret))]
pub struct BadSecret {
    pub(crate) option: String,
    pub(crate) reason: String,
    #[label("this value")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `config: bad cert base64 ...`, `tls: failed to find any PEM data in certificate input`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` does not hold a valid {what}: {reason}")]
#[diagnostic(code(config::option::bad_pem))]
pub struct BadPem {
    pub(crate) option: String,
    pub(crate) what: &'static str,
    pub(crate) reason: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `open <path>: no such file or directory`, at startup, without saying which option.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("cannot read `{path}` for `{option}`: {reason}")]
#[diagnostic(code(config::option::unreadable_file))]
pub struct UnreadableFile {
    pub(crate) option: String,
    pub(crate) path: String,
    pub(crate) reason: String,
    #[label("this file")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Two options that Pomerium refuses together. Pomerium: `cannot set both ca and ca_file`, `only
/// prefix_rewrite or regex_rewrite_pattern can be specified, but not both`, `specified both
/// kubernetes_service_account_token_file and kubernetes_service_account_token`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{first}` and `{second}` cannot both be set")]
#[diagnostic(code(config::option::conflict))]
pub struct Conflict {
    pub(crate) first: String,
    pub(crate) second: String,
    #[label("`{second}` here")]
    pub(crate) span: SourceSpan,
    #[label("`{first}` here")]
    pub(crate) other: Option<SourceSpan>,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `config: missing databroker storage backend dsn`, `config: client certificate key
/// and cert both must be non-empty`, `empty shared secret`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is required {because}")]
#[diagnostic(code(config::option::missing))]
pub struct Missing {
    pub(crate) option: String,
    pub(crate) because: String,
    #[label("needed because of this")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// A regular expression that does not compile (Pomerium leaves most of them to Envoy, which
/// rejects the whole configuration).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is not a valid regular expression: {reason}")]
#[diagnostic(
    code(config::option::bad_regex),
    help("the syntax is re2's, as Envoy uses it: no look-around and no backreferences")
)]
pub struct BadRegex {
    pub(crate) option: String,
    pub(crate) reason: String,
    #[label("this pattern")]
    pub(crate) span: SourceSpan,
}

/// A value of the right type that breaks a rule of its option.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("invalid `{option}`: {reason}")]
#[diagnostic(code(config::option::invalid))]
pub struct InvalidValue {
    pub(crate) option: String,
    pub(crate) reason: String,
    #[label("here")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// An environment variable that cannot be read as its option. Pomerium: `base64 decoding policy
/// data: ...`, `parsing base64-encoded policy data as yaml: ...`, `failed to decode headers from
/// '<s>'`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{var}` cannot be read: {reason}")]
#[diagnostic(code(config::env::invalid))]
pub struct BadEnv {
    pub(crate) var: String,
    pub(crate) reason: String,
    #[label("this value")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Pomerium: `config: policy bad source url ...`, `<url>: hostname must be specified`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is not a valid url: {reason}")]
#[diagnostic(code(config::route::bad_url))]
pub struct RouteBadUrl {
    pub(crate) option: &'static str,
    pub(crate) reason: String,
    #[label("this url")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// Pomerium: `config: policy source url (<u>) contains a path, but it should be set using the path
/// field instead`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("the `from` url has a path, `{path}`")]
#[diagnostic(
    code(config::route::from_path),
    help("`from` names a host; match paths with `prefix: {path}`, `path: {path}` or `regex`")
)]
pub struct FromPath {
    pub(crate) path: String,
    #[label("remove the path")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unsupported `from` scheme `{scheme}`")]
#[diagnostic(code(config::route::from_scheme), help("a route is served at `https://host` or `tcp+https://host:port`"))]
pub struct FromScheme {
    pub(crate) scheme: String,
    #[label("not a scheme a route can be served at")]
    pub(crate) span: SourceSpan,
}

/// A `from` scheme Pomerium serves and this server does not (`ssh://`, `udp+https://`).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{scheme}` routes are not served here: {reason}")]
#[diagnostic(
    code(config::route::scheme_not_served),
    help(
        "this server serves `https://host` and `tcp+https://host:port` routes; remove the route or serve it elsewhere"
    )
)]
pub struct SchemeNotServed {
    pub(crate) scheme: String,
    pub(crate) reason: &'static str,
    #[label("not served here")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `config: policy must have either a \`to\` or \`redirect\` or \`response\` defined`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a route needs one of `to`, `redirect` or `response`")]
#[diagnostic(
    code(config::route::no_action),
    help("add `to: http://upstream:8080` to proxy, `redirect: {{...}}` to redirect, or `response: {{...}}` to answer")
)]
pub struct NoAction {
    #[label("this route has none")]
    pub(crate) span: SourceSpan,
}

/// Pomerium silently uses `redirect`, else `response`, else `to`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a route takes only one of `to`, `redirect` and `response`, found `{first}` and `{second}`")]
#[diagnostic(
    code(config::route::several_actions),
    help("pomerium would silently ignore all but one of them; split the route in two, or remove one")
)]
pub struct SeveralActions {
    pub(crate) first: &'static str,
    pub(crate) second: &'static str,
    #[label("`{second}` here")]
    pub(crate) span: SourceSpan,
    #[label("`{first}` here")]
    pub(crate) other: SourceSpan,
}

/// Pomerium: `either all or none of the endpoints should have weight assigned`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("either every `to` url has a weight or none has")]
#[diagnostic(
    code(config::route::mixed_weights),
    help("add `,<weight>` to every url (e.g. `http://a:80,1`), or remove the weights")
)]
pub struct MixedWeights {
    #[label("this url has no weight")]
    pub(crate) span: SourceSpan,
    #[label("this one has")]
    pub(crate) weighted: SourceSpan,
}

/// Pomerium: `zero weight is not allowed`, and `strconv.ParseUint` errors.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{text}` is not a valid weight: {reason}")]
#[diagnostic(
    code(config::route::bad_weight),
    help("a weight is a whole number from 1 to 4294967295 after a comma: `http://a:80,10`")
)]
pub struct BadWeight {
    pub(crate) text: String,
    pub(crate) reason: String,
    #[label("this weight")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `config: cannot mix tcp and non-tcp To URLs` (and udp, unix).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{scheme}` upstreams cannot be mixed with `{other}` ones")]
#[diagnostic(code(config::route::mixed_schemes), help("make a separate route for each kind of upstream"))]
pub struct MixedSchemes {
    pub(crate) scheme: String,
    pub(crate) other: String,
    #[label("mixed in here")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `unsupported redirect response code <n> (supported values: 301, 302, 303, 307, 308)`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unsupported redirect response code {code}")]
#[diagnostic(code(config::route::redirect_code), help("the supported codes are 301, 302, 303, 307 and 308"))]
pub struct RedirectCode {
    pub(crate) code: String,
    #[label("not a redirect code envoy supports")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `config: policy route marked as public but contains whitelists`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a public route cannot also have `{list}`")]
#[diagnostic(
    code(config::route::public_with_allow_lists),
    help(
        "`allow_public_unauthenticated_access` lets everyone in, so the list would mean nothing; remove one of \
         the two"
    )
)]
pub struct PublicWithAllowLists {
    pub(crate) list: String,
    #[label("`{list}` here")]
    pub(crate) span: SourceSpan,
    #[label("the route is public here")]
    pub(crate) public: SourceSpan,
}

/// Pomerium: `config: policy route marked accessible for any authenticated user but contains
/// whitelists`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a route open to any authenticated user cannot also have `{list}`")]
#[diagnostic(
    code(config::route::any_user_with_allow_lists),
    help("`allow_any_authenticated_user` lets every signed-in user in, so the list would mean nothing; remove one")
)]
pub struct AnyUserWithAllowLists {
    pub(crate) list: String,
    #[label("`{list}` here")]
    pub(crate) span: SourceSpan,
    #[label("any authenticated user is allowed here")]
    pub(crate) any: SourceSpan,
}

/// Authorize finds a route's policy by its id, so two routes with one id share a policy.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("route id `{id}` is used twice")]
#[diagnostic(
    code(config::route::duplicate_id),
    help("authorize looks a route's policy up by its id, so one route would be authorized by the other's policy")
)]
pub struct DuplicateId {
    pub(crate) id: String,
    #[label("used again here")]
    pub(crate) span: SourceSpan,
    #[label("first used here")]
    pub(crate) first: Option<SourceSpan>,
}

/// Pomerium: `config: depends_on is limited to 5 additional redirect hosts, got [...]`.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`depends_on` lists {count} hosts, more than the limit of 5")]
#[diagnostic(code(config::route::depends_on), help("sign-in redirects through at most 5 other hosts"))]
pub struct TooManyDependsOn {
    pub(crate) count: usize,
    #[label("too many hosts")]
    pub(crate) span: SourceSpan,
}

// ---------------------------------------------------------------------------------------------
// Warnings
// ---------------------------------------------------------------------------------------------

/// Pomerium: `unknown config option` (logged; startup continues).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("unknown option `{option}`")]
#[diagnostic(code(config::option::unknown), severity(Warning))]
pub struct UnknownOption {
    pub(crate) option: String,
    #[label("pomerium ignores this")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// An option Pomerium acts on that this server accepts and does not act on
/// (`crate::support::UNSUPPORTED`).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is accepted but has no effect: {reason}")]
#[diagnostic(
    code(config::option::not_supported),
    severity(Warning),
    help("it has no effect on this server; remove it, or see README.md for what is supported")
)]
pub struct NotSupported {
    pub(crate) option: String,
    pub(crate) reason: &'static str,
    #[label("no effect here")]
    pub(crate) span: SourceSpan,
}

#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is deprecated")]
#[diagnostic(code(config::option::deprecated), severity(Warning))]
pub struct DeprecatedOption {
    pub(crate) option: String,
    #[label("deprecated")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: String,
}

/// An option that has no effect because another one takes precedence.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}` is ignored: {because}")]
#[diagnostic(code(config::option::ignored), severity(Warning))]
pub struct IgnoredOption {
    pub(crate) option: String,
    pub(crate) because: String,
    #[label("no effect")]
    pub(crate) span: SourceSpan,
}

/// `idp_provider: development`: the built-in provider that signs anyone in as a listed user.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`idp_provider: development` lets anyone sign in as {users} without a password")]
#[diagnostic(
    code(config::idp::development),
    severity(Warning),
    help(
        "the development identity provider is for trying things out on your own machine; set a real \
         provider (`idp_provider: oidc` or google, okta, ..., with `idp_provider_url`, `idp_client_id` and \
         `idp_client_secret`) before anyone else can reach this server"
    )
)]
pub struct DevelopmentProvider {
    pub(crate) users: String,
    #[label("for development only")]
    pub(crate) span: SourceSpan,
}

/// An identity provider where sign-in goes to a hosted authenticate service (no
/// `authenticate_service_url`, or one on Pomerium's hosted domains): the stateless flow sends
/// users there, and that service signs them in with its own provider, never this one.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`idp_provider` has no effect: sign-in goes to the hosted authenticate service, which uses its own provider")]
#[diagnostic(
    code(config::idp::hosted_authenticate),
    severity(Warning),
    help(
        "without `authenticate_service_url` (or with authenticate.pomerium.app), users sign in through \
         Pomerium's hosted authenticate service (the stateless flow); to sign them in with this provider, set \
         `authenticate_service_url` to the authenticate host this server serves, e.g. \
         `https://authenticate.example.com`"
    )
)]
pub struct HostedAuthenticate {
    #[label("this provider is never asked")]
    pub(crate) span: SourceSpan,
}

/// `bearer_token_format: jwt` verifies bearer JWTs against `jwt_allowed_issuers`, which this
/// server does not support yet: every bearer token on such a route is refused.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`bearer_token_format: jwt` is not supported yet: bearer tokens here are refused with 403")]
#[diagnostic(
    code(config::option::jwt_bearer_format),
    severity(Warning),
    help(
        "it needs `jwt_allowed_issuers`, which this server does not read yet; to accept your identity \
         provider's tokens use `idp_access_token` or `idp_identity_token`"
    )
)]
pub struct JwtBearerFormat {
    #[label("not supported")]
    pub(crate) span: SourceSpan,
}

/// Pomerium decodes a bare number into a Go `time.Duration`, which counts nanoseconds.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{option}: {text}` is {text} nanoseconds")]
#[diagnostic(
    code(config::option::bare_duration),
    severity(Warning),
    help("a number without a unit counts nanoseconds; write `{text}s` for seconds")
)]
pub struct BareDuration {
    pub(crate) option: String,
    pub(crate) text: String,
    #[label("no unit")]
    pub(crate) span: SourceSpan,
}

/// Envoy's first matching route wins, so a route whose requests an earlier route all matches is
/// never used.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this route is never used: an earlier route, {first}, matches every request it would")]
#[diagnostic(code(config::route::shadowed), severity(Warning))]
pub struct ShadowedRoute {
    pub(crate) first: String,
    #[label("unreachable")]
    pub(crate) span: SourceSpan,
    #[label("this route matches first")]
    pub(crate) first_span: Option<SourceSpan>,
    #[help]
    pub(crate) help: String,
}

/// A `$name` or `${name}` that Pomerium replaces with the empty string.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`{reference}` is not a header template pomerium knows, so it becomes an empty string")]
#[diagnostic(code(config::route::header_template), severity(Warning))]
pub struct HeaderTemplate {
    pub(crate) reference: String,
    #[label("replaced by nothing")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: Option<String>,
}

/// A route without access options and without a policy: every request is denied.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("this route allows nobody")]
#[diagnostic(
    code(config::route::allows_nothing),
    severity(Warning),
    help(
        "add a `policy`, or an access option such as `allowed_domains`, `allow_any_authenticated_user` or \
         `allow_public_unauthenticated_access`"
    )
)]
pub struct AllowsNothing {
    #[label("every request to this route is denied")]
    pub(crate) span: SourceSpan,
}

/// Pomerium: `config: policy source url (<u>) uses HTTP but only HTTPS is supported` (logged).
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("`from` uses http, but routes are served over https only")]
#[diagnostic(
    code(config::route::http_from),
    severity(Warning),
    help("write `https://`; plain http requests are redirected to https when `http_redirect_addr` is set")
)]
pub struct HttpFrom {
    #[label("http")]
    pub(crate) span: SourceSpan,
}

/// Pomerium leaves wildcard hosts out of autocert (`sourceHostnames`), logging nothing.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("autocert gets no certificate for the wildcard host `{host}`")]
#[diagnostic(
    code(config::route::autocert_wildcard),
    severity(Warning),
    help(
        "ACME needs a DNS-01 challenge for wildcards, which autocert does not answer; configure a certificate for it"
    )
)]
pub struct AutocertWildcard {
    pub(crate) host: String,
    #[label("wildcard")]
    pub(crate) span: SourceSpan,
}

/// A tcp or udp route is matched by a CONNECT request's `host:port`, which always has a port.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq)]
#[error("a {kind} route without a port never matches")]
#[diagnostic(code(config::route::no_port), severity(Warning))]
pub struct NoPort {
    pub(crate) kind: &'static str,
    #[label("no port")]
    pub(crate) span: SourceSpan,
    #[help]
    pub(crate) help: String,
}
