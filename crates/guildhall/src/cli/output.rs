//! Writing results for people: stdout and stderr lines (the one place text reaches the
//! terminal, escaped there), aligned tables, times and durations.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

/// Writes one line to stdout, escaped with [`escape`]; a closed pipe (`guildhall search |
/// head`) is not an error.
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", escape(line.as_ref()));
}

/// Writes one line to stderr, escaped with [`escape`] (error messages quote servers).
pub fn warn(line: impl AsRef<str>) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "{}", escape(line.as_ref()));
}

/// Whether a character must not reach a terminal as is: C0 and C1 controls and DEL (escape
/// sequences, carriage returns that overwrite a line, new lines that fake one), the line and
/// paragraph separators, and the Unicode format characters (category Cf: bidi overrides and
/// isolates, zero-width characters, tag characters), which reorder or hide what is shown.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// Text that came from a record or a server, made safe to print: every [`is_unsafe`]
/// character becomes `\u{…}`. The result holds only safe characters, so escaping twice
/// changes nothing (a backslash is left alone: the point is the terminal, not reversibility).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text with every [`is_unsafe`] character inside its strings written as a `\uXXXX`
/// escape: the same JSON value (a parser reads back the exact characters), but nothing a
/// terminal acts on. serde_json escapes only U+0000–U+001F; DEL, C1 and bidi controls pass raw.
/// Outside strings JSON text is ASCII punctuation, digits, letters and whitespace, so the new
/// lines between pretty-printed lines are the only unsafe characters there, and are kept.
pub fn json_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c != '\n' && is_unsafe(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prints a JSON value for machines on one line, escaped by [`json_safe`].
pub fn say_json_line(v: &serde_json::Value) {
    say(json_safe(&v.to_string()));
}

/// Prints a JSON value for machines: pretty, and escaped by [`json_safe`].
pub fn say_json(v: &serde_json::Value) -> Result<(), super::CliError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| super::CliError::Local(format!("cannot print JSON: {e}")))?;
    for line in json_safe(&text).lines() {
        say(line);
    }
    Ok(())
}

/// Escapes a cell (see [`escape`]) and cuts it to `max` characters as shown, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    let s = escape(s);
    if s.chars().count() <= max {
        s.into_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// An aligned plain-text table.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are escaped first, so the columns line up as printed.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| escape(c).into_owned()).collect());
    }

    /// The table as lines, columns separated by two spaces, trailing blanks trimmed.
    pub fn render(&self) -> Vec<String> {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(cell);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = vec![line(&self.header)];
        out.extend(self.rows.iter().map(|r| line(r)));
        out
    }

    pub fn print(&self) {
        for l in self.render() {
            say(l);
        }
    }
}

/// The current time as an ATProto datetime (UTC, milliseconds).
pub fn now_datetime() -> String {
    format_datetime(time::OffsetDateTime::now_utc())
}

/// A UTC instant as an ATProto datetime, e.g. `2026-03-01T12:00:00.000Z`.
pub fn format_datetime(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses a relative duration: a whole number and a unit, `s`, `m`, `h`, `d` or `w`
/// (e.g. `90d`, `12h`).
pub fn parse_duration(s: &str) -> Option<time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    (n > 0).then(|| time::Duration::seconds(n.saturating_mul(secs)))
}

/// A trust score in parts per million as a percentage.
pub fn percent_ppm(ppm: i64) -> String {
    format!("{:.1}%", ppm as f64 / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Some(time::Duration::days(90)));
        assert_eq!(parse_duration("12h"), Some(time::Duration::hours(12)));
        assert_eq!(parse_duration("2w"), Some(time::Duration::weeks(2)));
        assert_eq!(parse_duration("0d"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("10y"), None);
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn datetimes_are_atproto_datetimes() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).map(format_datetime);
        assert_eq!(t.ok().as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert!(guildhall_proto::syntax::Datetime::parse(&now_datetime()).is_ok());
    }

    #[test]
    fn controls_and_bidi_are_escaped_once() {
        assert_eq!(escape("plain → ünïcode ✓"), "plain → ünïcode ✓");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        let hostile = "a\u{1b}[2J\rb\u{202e}c\u{7f}\u{9b}d\u{2066}\u{200b}\n\t\u{e0041}";
        let safe = escape(hostile);
        assert_eq!(
            safe,
            "a\\u{1b}[2J\\u{d}b\\u{202e}c\\u{7f}\\u{9b}d\\u{2066}\\u{200b}\\u{a}\\u{9}\\u{e0041}"
        );
        assert!(!safe.chars().any(is_unsafe));
        assert_eq!(escape(&safe), safe);
    }

    #[test]
    fn json_stays_the_same_value_without_raw_controls() -> Result<(), serde_json::Error> {
        let v = serde_json::json!({ "name": "x\u{1b}]0;t\u{7}\r\u{202e}\u{9b}\u{7f}\u{e0041}y" });
        let text = serde_json::to_string_pretty(&v)?;
        // serde_json alone leaves DEL, C1 and U+202E raw.
        assert!(text.contains('\u{202e}') && text.contains('\u{9b}'));
        let safe = json_safe(&text);
        assert!(!safe.chars().any(|c| c != '\n' && is_unsafe(c)), "{safe}");
        assert!(
            safe.contains("\\u202e") && safe.contains("\\udb40\\udc41"),
            "{safe}"
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe)?, v);
        Ok(())
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), ["A    LONGER", "xyz  1"]);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\u{1b}[2J", 8), "a\\u{1b}…");
        assert_eq!(percent_ppm(640_000), "64.0%");
    }
}
