//! How a step of the container's init fails: its own file so the init and the
//! steps it calls (mounts, devices, exec) all import it without a loop.

/// A failed step: the exit code Docker uses for it and a one-line message.
#[derive(Debug)]
pub struct InitError {
    pub exit_code: i32,
    pub message: String,
}

impl InitError {
    pub fn setup(step: &str, err: impl std::fmt::Display) -> Self {
        InitError {
            exit_code: 125,
            message: format!("container init: {step}: {err}"),
        }
    }
}

impl InitError {
    /// Like [`InitError::setup`], with the error's sources in the message
    /// (`cannot set ...: Operation not permitted (os error 1)`).
    pub fn setup_chain(step: &str, err: &dyn std::error::Error) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        InitError::setup(step, message)
    }
}

/// The result of one init step.
pub type Step<T = ()> = Result<T, InitError>;
