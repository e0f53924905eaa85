//! Writing results for people: stdout lines, aligned tables, times and durations.

use std::io::Write as _;

/// Writes one line to stdout; a closed pipe (`guildhall search | head`) is not an error.
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
}

/// Cuts a cell to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
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

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
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
    fn tables_align() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), ["A    LONGER", "xyz  1"]);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(percent_ppm(640_000), "64.0%");
    }
}
