//! The operator's stop signals: SIGTERM (Kubernetes stopping the pod) and SIGINT (a terminal),
//! for the controllers' graceful shutdown and local mode's drain.

/// Resolves on SIGINT or SIGTERM.
pub async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
