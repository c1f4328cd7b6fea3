//! The model server of a local run: `model-server` started as a child process with the same
//! environment the operator gives its pods (from the Deployment builder), on a free loopback
//! port, and waited on exactly as the readiness probe waits (`GET /health` until 200, every
//! `periodSeconds`). Dropping the handle stops the child, on every exit path (errors, Ctrl-C,
//! panics).

use crate::resources::model_endpoint::deployment;
use loadgate_api::model_endpoint::ModelEndpoint;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running model-server child.
pub struct LocalServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

/// The server could not be started or did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The model directory is missing.
    #[error(
        "model directory {0} does not exist: run scripts/fetch-model.sh (or set spec.model to a local directory)"
    )]
    MissingModel(PathBuf),
    /// The binary could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The child exited before it was ready.
    #[error("model-server exited ({status}) before it was ready; its log ({log}) ends:\n{tail}")]
    Exited {
        /// Exit status.
        status: std::process::ExitStatus,
        /// Log file.
        log: String,
        /// Last lines.
        tail: String,
    },
    /// Not ready in time.
    #[error("model-server at {addr} was not ready after {waited:?} (last answer: {last})")]
    NotReady {
        /// Address.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// The last probe's outcome.
        last: String,
    },
    /// SIGINT/SIGTERM arrived while waiting.
    #[error("interrupted while waiting for model-server to be ready")]
    Interrupted,
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `spec.model` as a local directory: as written when it exists, else `models/<last part>` (the
/// image path `/models/all-MiniLM-L6-v2` maps to the folder scripts/fetch-model.sh fills). Hub
/// ids (`org/name`, not a path) pass through for model-server to download.
pub fn local_model(model: &str, models_dir: &Path) -> Result<String, ServerError> {
    let as_written = Path::new(model);
    if as_written.is_dir() {
        return Ok(model.to_owned());
    }
    let looks_like_path =
        model.starts_with('/') || model.starts_with('.') || model.matches('/').count() != 1;
    if !looks_like_path {
        return Ok(model.to_owned());
    }
    let name = as_written
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let local = models_dir.join(name);
    if local.is_dir() {
        Ok(local.display().to_string())
    } else {
        Err(ServerError::MissingModel(local))
    }
}

impl LocalServer {
    /// Starts `binary` for `endpoint` on a free loopback port, logging to `log`.
    ///
    /// # Errors
    /// [`ServerError`] when the model is missing or the process cannot start.
    pub fn start(
        endpoint: &ModelEndpoint,
        binary: &Path,
        models_dir: &Path,
        log: &Path,
    ) -> Result<Self, ServerError> {
        let model = local_model(&endpoint.spec.model, models_dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pod = deployment(endpoint, "local")
            .spec
            .template
            .spec
            .unwrap_or_default();
        let env = pod
            .containers
            .first()
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        let mut command = Command::new(binary);
        for var in env {
            let value = match var.name.as_str() {
                "MODEL" => model.clone(),
                "PORT" => port.to_string(),
                "HOST" => "127.0.0.1".to_owned(),
                "LOG_FORMAT" => "plain".to_owned(),
                "MODEL_CACHE_DIR" => std::env::temp_dir()
                    .join("loadgate-models")
                    .display()
                    .to_string(),
                _ => var.value.unwrap_or_default(),
            };
            command.env(var.name, value);
        }
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log_file = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        Ok(Self {
            child,
            addr,
            log: log.to_owned(),
        })
    }

    /// Polls `GET /health` every `period` until it answers 200, as the readiness probe does.
    /// Returns how long it took and the answers seen along the way (e.g. 503 then 200).
    ///
    /// # Errors
    /// [`ServerError::Exited`] when the child dies, [`ServerError::NotReady`] after `timeout`,
    /// [`ServerError::Interrupted`] when `interrupted()` turns true.
    pub fn wait_ready(
        &mut self,
        period: Duration,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(Duration, Vec<String>), ServerError> {
        let start = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(ServerError::Exited {
                    status,
                    log: self.log.display().to_string(),
                    tail: self.log_tail(20),
                });
            }
            let answer = probe(self.addr);
            if seen.last() != Some(&answer) {
                seen.push(answer.clone());
            }
            if answer.starts_with("200") {
                return Ok((start.elapsed(), seen));
            }
            if interrupted() {
                return Err(ServerError::Interrupted);
            }
            if start.elapsed() > timeout {
                return Err(ServerError::NotReady {
                    addr: self.addr,
                    waited: start.elapsed(),
                    last: answer,
                });
            }
            std::thread::sleep(period);
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Asks the server to drain (SIGTERM) and waits up to `grace` before killing it.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    fn terminate(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM through kill(1): the workspace forbids `unsafe`, and std only sends SIGKILL.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// One readiness probe: "200 ready", "503 not_ready", or why it failed ("connection refused").
fn probe(addr: SocketAddr) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response.split_whitespace().nth(1).unwrap_or("?").to_owned();
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_owned();
        Ok(format!("{code} {body}"))
    };
    attempt().unwrap_or_else(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_map_to_the_local_models_folder() {
        let dir = std::env::temp_dir().join(format!("loadgate-models-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("all-MiniLM-L6-v2")).unwrap();
        let local = local_model("/models/all-MiniLM-L6-v2", &dir).unwrap();
        assert_eq!(local, dir.join("all-MiniLM-L6-v2").display().to_string());
        assert_eq!(
            local_model("sentence-transformers/all-MiniLM-L6-v2", &dir).unwrap(),
            "sentence-transformers/all-MiniLM-L6-v2"
        );
        let missing = local_model("/models/nope", &dir).unwrap_err().to_string();
        assert!(missing.contains("scripts/fetch-model.sh"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
