//! Java properties files, the form Kafka client configurations are usually kept in.

use std::path::Path;

use crate::error::ConfigError;

/// Reads the `key=value` pairs of a Java properties file, in file order (a later key overrides
/// an earlier one wherever they are applied).
///
/// The syntax is Java's: `key=value`, `key: value` or `key value`; lines starting with `#` or
/// `!` are comments; a trailing backslash continues a property on the next line; `\t`, `\n`,
/// `\uXXXX`, `\=`, `\:` and `\\` are escapes. Keys and values are trimmed. Unlike Java, a line
/// that is only a key is an error, naming the file and line, since it is almost always a typo.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<(String, String)>, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::UnreadableFile { path: path.to_owned(), reason: e.to_string() })?;
    parse(&text, path)
}

/// Parses the text of a properties file; `path` only names it in errors.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let malformed = |line: usize, reason: String| ConfigError::MalformedLine { path: path.to_owned(), line, reason };
    let mut properties = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let first = line.trim_start();
        if first.is_empty() || first.starts_with(['#', '!']) {
            continue;
        }
        let mut logical = first.to_owned();
        while continues(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let logical = logical.trim_end();
        let (key, value) =
            split(logical).ok_or_else(|| malformed(index + 1, format!("expected key=value, got {logical:?}")))?;
        let key = unescape(key.trim()).map_err(|reason| malformed(index + 1, reason))?;
        let value = unescape(value.trim()).map_err(|reason| malformed(index + 1, reason))?;
        if key.is_empty() {
            return Err(malformed(index + 1, format!("no key before the separator in {logical:?}")));
        }
        properties.push((key, value));
    }
    Ok(properties)
}

/// Whether the line ends in an odd number of backslashes: an escaped backslash does not
/// continue it.
fn continues(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace (whitespace may be followed by `=` or
/// `:`); `None` when the line has no separator.
fn split(line: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' {
            return Some((&line[..at], &line[at + 1..]));
        } else if c.is_whitespace() {
            let rest = line[at..].trim_start();
            return Some((&line[..at], rest.strip_prefix(['=', ':']).unwrap_or(rest)));
        }
    }
    None
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 4).and_then(char::from_u32);
                out.push(code.ok_or_else(|| format!("malformed \\uXXXX escape \\u{hex}"))?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// The key of `known` nearest to an unknown one, if it is near enough to be a typo of it.
pub(crate) fn nearest_key(unknown: &str, known: impl IntoIterator<Item = &'static str>) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase();
    let limit = (unknown.len() / 4).clamp(1, 3);
    known
        .into_iter()
        .map(|key| (edit_distance(&unknown, key), key))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.bytes().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
        parse(text, Path::new("client.properties"))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn comments_separators_continuations_and_escapes() {
        let text = "# consumer settings\n\
                    ! also a comment\n\
                    \n\
                    bootstrap.servers = 127.0.0.1:9092,\\\n    127.0.0.1:9093\n\
                    group.id: orders\n\
                    client.id  billing\n\
                    \tsession.timeout.ms=10000   \n\
                    ssl.ca.location=C:\\\\certs\\\\ca.pem\n\
                    a\\=b=\\u0041\\tz\n\
                    empty=\n\
                    # a comment ending in a backslash continues nothing \\\n\
                    last=1\r\n";
        assert_eq!(
            parsed(text).unwrap(),
            pairs(&[
                ("bootstrap.servers", "127.0.0.1:9092,127.0.0.1:9093"),
                ("group.id", "orders"),
                ("client.id", "billing"),
                ("session.timeout.ms", "10000"),
                ("ssl.ca.location", "C:\\certs\\ca.pem"),
                ("a=b", "A\tz"),
                ("empty", ""),
                ("last", "1"),
            ])
        );
    }

    #[test]
    fn a_malformed_line_names_the_file_and_line() {
        let err = parsed("# settings\ngroup.id=g\njust-a-word\n").unwrap_err();
        assert_eq!(
            err,
            ConfigError::MalformedLine {
                path: "client.properties".into(),
                line: 3,
                reason: "expected key=value, got \"just-a-word\"".into(),
            }
        );
        assert!(err.to_string().starts_with("client.properties:3: "), "{err}");
        for (text, line) in [("a=1\n=value\n", 2), ("a=\\u00zz\n", 1), ("a=1\nb=2\\\n  3\nc\n", 4)] {
            match parsed(text) {
                Err(ConfigError::MalformedLine { line: at, .. }) => assert_eq!(at, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let err = read_file("/nonexistent/kgroup/client.properties").unwrap_err();
        assert!(err.to_string().starts_with("cannot read properties file /nonexistent/kgroup/client.properties: "));
    }
}
