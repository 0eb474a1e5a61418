//! Why a write happened, and who asked for it.

/// The longest reason text accepted, in characters.
pub const MAX_REASON_LEN: usize = 512;

/// Why a write was made: free text, and optionally who made it and the trace it
/// belongs to. Every removal, plan execution and restore needs a non-empty text
/// of at most [`MAX_REASON_LEN`] characters; puts may carry [`Reason::none`].
///
/// # Examples
///
/// ```
/// use safemap::Reason;
/// let why = Reason::new("customer asked").with_actor("support-bot");
/// assert_eq!(why.actor(), Some("support-bot"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reason {
    text: String,
    actor: Option<String>,
    trace_id: Option<String>,
}

/// A reason text that a removal cannot accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReasonProblem {
    Missing,
    TooLong,
}

impl Reason {
    /// A reason with the given text.
    pub fn new(text: impl Into<String>) -> Self {
        Reason {
            text: text.into(),
            actor: None,
            trace_id: None,
        }
    }

    /// No reason: acceptable for puts, refused for removals.
    pub fn none() -> Self {
        Reason::default()
    }

    /// Names who made the write (the server uses the token's name).
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Ties the write to a trace (the server uses the W3C trace id).
    #[must_use]
    pub fn with_trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Who made the write, if known.
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// The trace the write belongs to, if known.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// Checks that the text is fit for a removal.
    ///
    /// Cheap for the usual short text: blankness stops at the first
    /// non-blank character (`trim` scanned from both ends), and a text of at
    /// most `MAX_REASON_LEN` bytes has at most as many characters, so only a
    /// longer one is counted (counting every text, with `trim`, cost ~140
    /// instructions per removal).
    pub(crate) fn check_for_removal(&self) -> Result<(), ReasonProblem> {
        if self.text.chars().all(char::is_whitespace) {
            Err(ReasonProblem::Missing)
        } else if self.text.len() > MAX_REASON_LEN && self.text.chars().count() > MAX_REASON_LEN {
            Err(ReasonProblem::TooLong)
        } else {
            Ok(())
        }
    }

    /// The text as recorded in the journal: `None` when empty.
    pub(crate) fn recorded_text(&self) -> Option<String> {
        (!self.text.is_empty()).then(|| self.text.clone())
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Reason::new(text)
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Reason::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_needs_non_blank_text_within_the_limit() {
        assert_eq!(
            Reason::none().check_for_removal(),
            Err(ReasonProblem::Missing)
        );
        assert_eq!(
            Reason::new("  ").check_for_removal(),
            Err(ReasonProblem::Missing)
        );
        assert_eq!(
            Reason::new("x".repeat(MAX_REASON_LEN)).check_for_removal(),
            Ok(())
        );
        assert_eq!(
            Reason::new("é".repeat(MAX_REASON_LEN + 1)).check_for_removal(),
            Err(ReasonProblem::TooLong)
        );
    }
}
