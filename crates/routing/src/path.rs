//! The routes of one virtual host: exact paths hashed, prefixes in a byte trie, regexes in order.
//! Each entry holds the index of the first route it stands for; a lookup takes the smallest.

use crate::{PathRule, RouteError};
use foldhash::HashMap;
use regex::Regex;

/// Compiled regexes stay small: patterns come from configuration, which may be hostile.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// "No route": larger than every index.
const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct PathIndex {
    exact: HashMap<Box<str>, u32>,
    prefixes: Trie,
    /// In index order, so a lookup can stop at the best candidate found so far.
    regexes: Vec<(u32, Regex)>,
    lowest: u32,
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex { exact: HashMap::default(), prefixes: Trie::default(), regexes: Vec::new(), lowest: NONE }
    }
}

/// A path rule ready to insert (regexes compiled): compiling first means a bad rule leaves no trace.
pub(crate) enum Rule {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

impl Rule {
    /// `None` for a CONNECT rule, which has no path.
    pub(crate) fn compile(rule: &PathRule) -> Result<Option<Rule>, RouteError> {
        Ok(Some(match rule {
            PathRule::Prefix(prefix) => Rule::Prefix(prefix.clone()),
            PathRule::Exact(path) => Rule::Exact(path.clone()),
            PathRule::Regex(pattern) => Rule::Regex(
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| RouteError::Regex { pattern: pattern.clone(), reason: e.to_string() })?,
            ),
            PathRule::Connect => return Ok(None),
        }))
    }
}

impl PathIndex {
    pub(crate) fn insert(&mut self, rule: Rule, index: u32) {
        self.lowest = self.lowest.min(index);
        match rule {
            Rule::Exact(path) => {
                self.exact.entry(path.into()).or_insert(index);
            }
            Rule::Prefix(prefix) => self.prefixes.insert(prefix.as_bytes(), index),
            Rule::Regex(regex) => self.regexes.push((index, regex)),
        }
    }

    /// The index of the first route below `bound` whose rule matches `path`.
    pub(crate) fn first_match(&self, path: &str, bound: u32) -> Option<u32> {
        if self.lowest >= bound {
            return None;
        }
        let mut best = bound;
        if !self.exact.is_empty()
            && let Some(&index) = self.exact.get(path)
        {
            best = best.min(index);
        }
        best = best.min(self.prefixes.first_prefix_of(path.as_bytes()));
        for (index, regex) in &self.regexes {
            if *index >= best {
                break;
            }
            if regex.is_match(path) {
                best = *index;
                break;
            }
        }
        (best < bound).then_some(best)
    }

    /// The smallest index of any route here.
    pub(crate) fn lowest(&self) -> u32 {
        self.lowest
    }
}

/// A byte trie of prefixes. A node records the first route whose prefix ends there; walking a
/// path down the trie passes every prefix of it, so the smallest record seen is the answer.
#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    first: u32,
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie { nodes: vec![Node { first: NONE, children: Vec::new() }] }
    }
}

impl Trie {
    fn insert(&mut self, prefix: &[u8], index: u32) {
        let mut at = 0usize;
        for &byte in prefix {
            at = match self.child(at, byte) {
                Some(next) => next as usize,
                None => self.push_child(at, byte),
            };
        }
        if let Some(node) = self.nodes.get_mut(at) {
            node.first = node.first.min(index);
        }
    }

    fn push_child(&mut self, parent: usize, byte: u8) -> usize {
        let next = self.nodes.len();
        self.nodes.push(Node { first: NONE, children: Vec::new() });
        if let Some(node) = self.nodes.get_mut(parent) {
            // Node numbers fit u32: there is at most one node per prefix byte, and inputs are capped.
            let slot = node.children.partition_point(|(b, _)| *b < byte);
            node.children.insert(slot, (byte, u32::try_from(next).unwrap_or(u32::MAX)));
        }
        next
    }

    fn child(&self, at: usize, byte: u8) -> Option<u32> {
        let children = &self.nodes.get(at)?.children;
        let slot = children.binary_search_by_key(&byte, |(b, _)| *b).ok()?;
        children.get(slot).map(|(_, next)| *next)
    }

    fn first_prefix_of(&self, path: &[u8]) -> u32 {
        let Some(root) = self.nodes.first() else { return NONE };
        let mut best = root.first;
        let mut at = 0usize;
        for &byte in path {
            let Some(next) = self.child(at, byte) else { break };
            at = next as usize;
            if let Some(node) = self.nodes.get(at) {
                best = best.min(node.first);
            }
        }
        best
    }
}
