//! The process environment, which Rust 2024 makes `unsafe` to change: another thread may read it
//! at the same moment (through libc's `getenv`, which no lock guards), and that is a data race.
//!
//! What it owns: the one `std::env::set_var` of model-server, for the variables candle sizes its
//! thread pools from (see the binary's `size_compute_pools`). [`set_env_defaults`] is safe to call
//! because it first checks, on Linux, that the process has exactly one thread, the caller: then no
//! other thread exists to race with, and none can start while this one is busy here.

/// The environment was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Other threads exist: changing the environment could race with their reads.
    #[error("the process has {0} threads; the environment is changed only while it has one")]
    Threads(usize),
    /// The threads could not be counted (`/proc/self/task`; not Linux).
    #[error("cannot count this process's threads: {0}")]
    Uncounted(std::io::Error),
}

/// Sets each `(name, value)` of `vars` that the environment does not have yet (values already
/// set are kept). Call it first thing in `main`, before any thread (the async runtime, a logger's
/// writer, a pool) starts.
///
/// # Errors
/// When the process has other threads, or they cannot be counted: nothing is set then.
pub fn set_env_defaults(vars: &[(&str, &str)]) -> Result<(), EnvError> {
    let threads = thread_count().map_err(EnvError::Uncounted)?;
    if threads != 1 {
        return Err(EnvError::Threads(threads));
    }
    for &(name, value) in vars {
        if std::env::var_os(name).is_none() {
            // SAFETY: this thread is the process's only one (counted just above, and only it can
            // start another, which it does not do here), so nothing reads the environment
            // concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}

/// This process's threads: the entries of `/proc/self/task`.
fn thread_count() -> std::io::Result<usize> {
    if cfg!(target_os = "linux") {
        std::fs::read_dir("/proc/self/task")?.try_fold(0, |count, entry| entry.map(|_| count + 1))
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "threads are counted through /proc/self/task, on Linux only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn nothing_is_set_while_other_threads_run() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        let name = "LOADGATE_KERNELS_PROCESS_TEST_UNSET";
        let result = set_env_defaults(&[(name, "1")]);
        assert!(
            matches!(result, Err(EnvError::Threads(n)) if n >= 2),
            "{result:?}"
        );
        assert!(std::env::var_os(name).is_none());
        stop.send(()).unwrap();
        other.join().unwrap().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn threads_are_counted_on_linux() {
        assert!(thread_count().unwrap() >= 1);
    }
}
