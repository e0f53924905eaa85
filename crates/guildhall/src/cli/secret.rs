//! A string that must never be printed: app passwords and session tokens. Its `Debug` shows
//! `[redacted]`, it has no `Display`, and the text is reached only through [`Secret::expose`],
//! so a `{:?}` of a session, an argument struct or an error cannot leak it.

use std::convert::Infallible;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A secret string; serialized as the plain string (the session file's format is unchanged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Lets clap parse `--password` straight into a `Secret`.
impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_text_and_serde_keeps_it() -> Result<(), serde_json::Error> {
        let s = Secret::new("hunter2-app-password");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(serde_json::to_string(&s)?, "\"hunter2-app-password\"");
        let back: Secret = serde_json::from_str("\"hunter2-app-password\"")?;
        assert_eq!(back.expose(), "hunter2-app-password");
        Ok(())
    }
}
