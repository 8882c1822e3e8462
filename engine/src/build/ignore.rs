//! `.dockerignore`: patterns anchored at the context root, `*` and `?` within a
//! path segment, `**` across segments, `!` re-including, the last matching line
//! winning. A pattern that matches a directory excludes everything below it.
//! BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile first.

use std::path::Path;

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    exclude: bool,
}

/// The parsed ignore file of a build context.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, body) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            let segments = clean(body);
            if segments.is_empty() {
                continue;
            }
            patterns.push(Pattern { segments, exclude });
        }
        Ignore { patterns }
    }

    /// Reads the ignore file for a build: `<dockerfile>.dockerignore` when it
    /// exists, else `<context>/.dockerignore`, else nothing is ignored.
    pub fn for_build(context: &Path, dockerfile: Option<&Path>) -> std::io::Result<Ignore> {
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.file_name().unwrap_or_default().to_os_string();
            name.push(".dockerignore");
            candidates.push(df.with_file_name(name));
        }
        candidates.push(context.join(".dockerignore"));
        for c in candidates {
            match std::fs::read_to_string(&c) {
                Ok(text) => return Ok(Ignore::parse(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Ignore::default())
    }

    /// True when `rel` (a path relative to the context root, `/`-separated) is ignored.
    pub fn is_ignored(&self, rel: &str) -> bool {
        let path = clean(rel);
        if path.is_empty() {
            return false;
        }
        let mut ignored = false;
        for p in &self.patterns {
            // the pattern may name the path itself or any directory above it
            let hit = (1..=path.len()).any(|n| match_segments(&p.segments, &path[..n]));
            if hit {
                ignored = p.exclude;
            }
        }
        ignored
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Splits a path into its segments with `.` and empty ones dropped and `..` applied.
fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

fn match_segments(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((seg, path_rest)) => glob(first, seg) && match_segments(rest, path_rest),
            None => false,
        },
    }
}

/// Shell-style match of one segment: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    let Some((&c, prest)) = p.split_first() else {
        return n.is_empty();
    };
    match c {
        '*' => (0..=n.len()).any(|k| glob_at(prest, &n[k..])),
        '?' => !n.is_empty() && glob_at(prest, &n[1..]),
        '[' => {
            let Some((&ch, nrest)) = n.split_first() else {
                return false;
            };
            match class(prest, ch) {
                Some((true, after)) => glob_at(after, nrest),
                Some((false, _)) => false,
                None => ch == '[' && glob_at(prest, nrest),
            }
        }
        '\\' if !prest.is_empty() => {
            !n.is_empty() && n[0] == prest[0] && glob_at(&prest[1..], &n[1..])
        }
        c => !n.is_empty() && n[0] == c && glob_at(prest, &n[1..]),
    }
}

/// Matches `ch` against a class body (after `[`); returns the match and the rest
/// of the pattern after `]`, or None when the class is not closed.
fn class(p: &[char], ch: char) -> Option<(bool, &[char])> {
    let (negate, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, &p[i + 1..]));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if lo <= ch && ch <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if lo == ch {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_at_the_root() {
        let ig = Ignore::parse("# comment\n\nfoo\n/bar/baz\n*.log\n");
        assert!(ig.is_ignored("foo"));
        assert!(ig.is_ignored("foo/inner.txt"));
        assert!(!ig.is_ignored("sub/foo"));
        assert!(ig.is_ignored("bar/baz"));
        assert!(!ig.is_ignored("bar"));
        assert!(ig.is_ignored("a.log"));
        assert!(!ig.is_ignored("dir/a.log"));
        assert!(!ig.is_ignored("foobar"));
    }

    #[test]
    fn double_star_and_classes() {
        let ig = Ignore::parse("**/*.pyc\ndocs/**/draft?.md\n[ab]*.tmp\n");
        assert!(ig.is_ignored("x.pyc"));
        assert!(ig.is_ignored("a/b/c/x.pyc"));
        assert!(ig.is_ignored("docs/draft1.md"));
        assert!(ig.is_ignored("docs/a/b/draft2.md"));
        assert!(!ig.is_ignored("docs/a/b/draft10.md"));
        assert!(ig.is_ignored("b1.tmp"));
        assert!(!ig.is_ignored("c1.tmp"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let ig = Ignore::parse("*.md\n!README.md\nREADME*\n");
        assert!(ig.is_ignored("CHANGES.md"));
        assert!(ig.is_ignored("README.md"), "the later README* wins");
        let ig = Ignore::parse("*\n!app\n!app/**\napp/secret\n");
        assert!(ig.is_ignored("Dockerfile.local"));
        assert!(!ig.is_ignored("app/main.py"));
        assert!(ig.is_ignored("app/secret"));
        assert!(ig.is_ignored("app/secret/key"));
    }

    #[test]
    fn cleaning() {
        let ig = Ignore::parse("./a/../b/\n");
        assert!(ig.is_ignored("b/x"));
        assert!(!ig.is_ignored("a"));
        assert!(glob(r"a\*", "a*"));
        assert!(!glob(r"a\*", "ab"));
        assert!(glob("[^a]x", "bx"));
    }

    #[test]
    fn dockerfile_specific_file_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "general\n").unwrap();
        let df = dir.path().join("app.Dockerfile");
        std::fs::write(dir.path().join("app.Dockerfile.dockerignore"), "special\n").unwrap();
        let ig = Ignore::for_build(dir.path(), Some(&df)).unwrap();
        assert!(ig.is_ignored("special") && !ig.is_ignored("general"));
        let ig = Ignore::for_build(dir.path(), Some(&dir.path().join("Dockerfile"))).unwrap();
        assert!(ig.is_ignored("general"));
    }
}
