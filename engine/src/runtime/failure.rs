//! How a step of the container's init fails: its own file so the init and the
//! steps it calls (mounts, devices, exec) all import it without a loop.

/// A failed step: the exit code Docker uses for it and a one-line message.
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

/// The result of one init step.
pub type Step<T = ()> = Result<T, InitError>;
