//! `/healthz` (the agent's loop is alive) and `/readyz` (the first full
//! sync is enforced, and the source follows changes) over plain HTTP/1.1 on `--health-addr`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tracing::warn;

/// Binds the health listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

fn answer(path: &str, ready: bool) -> (&'static str, &'static str) {
    match path {
        "/healthz" => ("200 OK", "ok\n"),
        "/readyz" if ready => ("200 OK", "ready\n"),
        "/readyz" => (
            "503 Service Unavailable",
            "not ready: first sync not enforced yet, or a source cannot follow changes \
             (see `palisade status`)\n",
        ),
        _ => ("404 Not Found", "not found\n"),
    }
}

/// Serves until the task is dropped; `/metrics` too when `metrics` is
/// given.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            warn!("health accept failed");
            continue;
        };
        let ready = ready.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
                .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match (path, &metrics) {
                ("/metrics", Some(m)) => {
                    // Reading the maps is a few syscalls per series: off
                    // the async workers.
                    let m = m.clone();
                    let text = tokio::task::spawn_blocking(move || m.encode())
                        .await
                        .unwrap_or_default();
                    ("200 OK", crate::metrics::CONTENT_TYPE, text)
                }
                _ => {
                    let (status, body) = answer(path, ready.load(Ordering::Relaxed));
                    (status, "text/plain", body.to_string())
                }
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(answer("/healthz", false).0, "200 OK");
        assert_eq!(answer("/readyz", false).0, "503 Service Unavailable");
        assert_eq!(answer("/readyz", true).0, "200 OK");
        assert_eq!(answer("/x", true).0, "404 Not Found");
    }
}
