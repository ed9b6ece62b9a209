//! Byte spans into a policy's source text, and a line index to turn them into line:column.

/// A half-open byte range `start..end` into the source a node was parsed from.
///
/// Spans are plain offsets: the source text itself travels separately (the CLI attaches it when it
/// renders a diagnostic), which keeps the AST small and lets a policy embedded in a larger file
/// (a route's `policy:` in `config.yaml`) point into that file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The span `start..end`; a reversed range is normalised rather than rejected.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: start.min(end), end: start.max(end) }
    }

    /// An empty span at `offset`, used for "something is missing here".
    pub fn empty_at(offset: usize) -> Span {
        Span { start: offset, end: offset }
    }

    pub fn start(self) -> usize {
        self.start
    }

    pub fn end(self) -> usize {
        self.end
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// Whether `offset` lies inside this span.
    pub fn contains(self, offset: usize) -> bool {
        self.start <= offset && offset < self.end
    }

    /// The same span moved `delta` bytes to the right (a policy embedded at `delta` in a file).
    pub fn shifted(self, delta: usize) -> Span {
        Span { start: self.start + delta, end: self.end + delta }
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> miette::SourceSpan {
        miette::SourceSpan::new(span.start.into(), span.len())
    }
}

/// A 1-based line and column; the column counts characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for LineCol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Maps byte offsets of one source text to line and column.
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(source: &'a str) -> LineIndex<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { source, line_starts }
    }

    /// The line and column of `offset`; offsets past the end clamp to the end.
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&start| start <= offset).max(1);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column =
            self.source.get(line_start..offset).map_or(offset - line_start, |prefix| prefix.chars().count()) + 1;
        LineCol { line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let index = LineIndex::new("ab\né:x\n");
        assert_eq!(index.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(index.line_col(3), LineCol { line: 2, column: 1 });
        // `:` comes after the two-byte `é`, so it is byte 5 but column 2.
        assert_eq!(index.line_col(5), LineCol { line: 2, column: 2 });
        assert_eq!(index.line_col(99), LineCol { line: 3, column: 1 });
    }

    #[test]
    fn reversed_span_is_normalised() {
        assert_eq!(Span::new(5, 2), Span::new(2, 5));
        assert_eq!(Span::new(1, 3).join(Span::new(6, 8)), Span::new(1, 8));
    }
}
