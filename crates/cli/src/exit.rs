//! restic's exit codes (doc/075_scripting.rst), decided here and nowhere else: `main`
//! turns a command's outcome into one, and the agent's termination log records the same.

use restash_engine::EngineError;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Everything asked for was done.
    Ok,
    /// Done, but some items failed; they have been reported (exit 3).
    Partial,
    /// Stopped by SIGINT after saving what it could; reported (exit 130).
    Interrupted,
    /// Stopped by SIGTERM after saving what it could; reported (exit 143).
    Terminated,
}

impl Done {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Done::Ok => 0,
            Done::Partial => 3,
            Done::Interrupted => 130,
            Done::Terminated => 143,
        }
    }
}

/// The exit code restic would use for this error.
pub fn error_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<EngineError>())
        .map_or(1, |e| e.exit_code() as u8)
}

/// The error and its causes, each said once: engine errors already include their cause in
/// their own text.
pub fn message(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    msg
}

/// A closed stdout (`restash ls | head`) ends the command quietly, as it does for
/// ripgrep and cat: the reader has all it wanted.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_restic() {
        let e = |x: EngineError| error_code(&anyhow::Error::from(x));
        assert_eq!(e(EngineError::NoRepository("x".into())), 10);
        assert_eq!(e(EngineError::Locked("x".into())), 11);
        assert_eq!(e(EngineError::WrongPassword), 12);
        assert_eq!(e(EngineError::Partial(vec![])), 3);
        assert_eq!(e(EngineError::Interrupted), 130);
        assert_eq!(e(EngineError::Terminated), 143);
        assert_eq!(error_code(&anyhow::anyhow!("plain")), 1);
        let wrapped = anyhow::Error::from(EngineError::Locked("y".into())).context("forget");
        assert_eq!(error_code(&wrapped), 11);
        assert_eq!(message(&wrapped), "forget: repository is already locked: y");
        assert_eq!(Done::Partial.code(), 3);
    }
}
