//! One scrape of one target: its `/readyz` and its `/metrics`, each bounded in time and in bytes,
//! so that a target that hangs, trickles, answers garbage or a huge body costs one failed scrape
//! of `timeout`, never a stalled or exhausted monitoring role.

use std::time::Duration;

use url::Url;

use super::signals::{self, Reading};

/// A metrics page larger than this is refused (ours are a few KB; the largest, a collector's with
/// many shards and routes, well under 1 MiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// What one scrape found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// `/metrics` answered 200 with metrics in it.
    pub up: bool,
    /// `/readyz` answered 200.
    pub ready: bool,
    pub reading: Option<Reading>,
    /// Why it is not up, or not ready, in words for the status page.
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Scraper {
    client: reqwest::Client,
    timeout: Duration,
    max_body: usize,
}

impl Scraper {
    pub fn new(timeout: Duration) -> Scraper {
        Scraper::with_limit(timeout, MAX_BODY)
    }

    pub fn with_limit(timeout: Duration, max_body: usize) -> Scraper {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(2)
            .build()
            .expect("an HTTP client");
        Scraper {
            client,
            timeout,
            max_body,
        }
    }

    /// Scrapes the role at `base` (`http://host:port`): both requests at once, each within the
    /// timeout.
    pub async fn scrape(&self, base: &Url) -> Scrape {
        let (metrics, ready) = tokio::join!(self.get(base, "/metrics"), self.get(base, "/readyz"));
        let ready_error = match &ready {
            Ok((200, _)) => None,
            Ok((status, _)) => Some(format!("/readyz answered {status}")),
            Err(e) => Some(format!("/readyz: {e}")),
        };
        let (reading, metrics_error) = match metrics {
            Ok((200, body)) => match tokio::task::spawn_blocking(move || parse(&body)).await {
                Ok(Some(reading)) => (Some(reading), None),
                Ok(None) => (None, Some("/metrics holds no metrics".to_owned())),
                Err(e) => (None, Some(format!("/metrics could not be read: {e}"))),
            },
            Ok((status, _)) => (None, Some(format!("/metrics answered {status}"))),
            Err(e) => (None, Some(format!("/metrics: {e}"))),
        };
        Scrape {
            up: reading.is_some(),
            ready: ready_error.is_none(),
            reading,
            error: metrics_error.or(ready_error),
        }
    }

    /// GETs `path` of `base`: the status and at most `max_body` bytes of body, within the timeout.
    async fn get(&self, base: &Url, path: &str) -> Result<(u16, Vec<u8>), String> {
        let url = base.join(path).map_err(|e| e.to_string())?;
        let fetch = async {
            let mut response = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            if response
                .content_length()
                .is_some_and(|n| n > self.max_body as u64)
            {
                return Err(format!("the answer is larger than {} bytes", self.max_body));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
                if body.len() + chunk.len() > self.max_body {
                    return Err(format!("the answer is larger than {} bytes", self.max_body));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        e.to_string()
    }
}

/// The reading of a metrics page; `None` when no line of it is a sample.
fn parse(body: &[u8]) -> Option<Reading> {
    let text = String::from_utf8_lossy(body);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()?;
    (!scrape.samples.is_empty()).then(|| signals::read(&scrape))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use futures_util::StreamExt;

    use super::*;

    const METRICS: &str = "# TYPE scopehub_collector_reports counter\n\
                           scopehub_collector_reports_total{outcome=\"accepted\"} 3\n# EOF\n";

    async fn serve(router: Router) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Url::parse(&format!("http://{addr}")).unwrap()
    }

    #[tokio::test]
    async fn a_healthy_target_is_up_and_ready() {
        let base = serve(
            Router::new()
                .route("/metrics", get(|| async { METRICS }))
                .route("/readyz", get(|| async { "ready" })),
        )
        .await;
        let s = Scraper::new(Duration::from_secs(2)).scrape(&base).await;
        assert!(s.up && s.ready, "{s:?}");
        assert_eq!(s.reading.unwrap().reports["accepted"], 3.0);
        assert_eq!(s.error, None);
    }

    #[tokio::test]
    async fn bad_targets_cost_one_failed_scrape() {
        let scraper = Scraper::with_limit(Duration::from_millis(500), 64 * 1024);
        // Nobody listening.
        let gone = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            drop(l);
            Url::parse(&format!("http://{addr}")).unwrap()
        };
        let s = scraper.scrape(&gone).await;
        assert!(!s.up && !s.ready && s.error.is_some(), "{s:?}");

        // Hangs: accepts and never answers; and one that trickles a byte a second.
        let hangs = serve(Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            ""
        }))
        .await;
        let trickles = serve(Router::new().fallback(|| async {
            let bytes = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"#")),
                    (),
                ))
            });
            Body::from_stream(bytes)
        }))
        .await;
        for base in [&hangs, &trickles] {
            let started = std::time::Instant::now();
            let s = scraper.scrape(base).await;
            assert!(!s.up && !s.ready, "{s:?}");
            assert!(s.error.unwrap().contains("no answer within"));
            assert!(started.elapsed() < Duration::from_secs(3));
        }

        // Garbage, and a body far over the limit (sent with and without a length).
        let garbage = serve(
            Router::new()
                .route(
                    "/metrics",
                    get(|| async { "<html>not metrics</html>\x00\u{fffd}" }),
                )
                .route("/readyz", get(|| async { "ready" })),
        )
        .await;
        let s = scraper.scrape(&garbage).await;
        assert!(!s.up && s.ready, "{s:?}");
        assert_eq!(s.error.as_deref(), Some("/metrics holds no metrics"));
        let huge = serve(
            Router::new()
                .route(
                    "/metrics",
                    get(|| async { "x 1\n".repeat(50 * 1024 * 1024 / 4) }),
                )
                .route(
                    "/readyz",
                    get(|| async {
                        let chunks = futures_util::stream::repeat_with(|| {
                            Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 64 * 1024]))
                        })
                        .take(800);
                        Body::from_stream(chunks)
                    }),
                ),
        )
        .await;
        let s = scraper.scrape(&huge).await;
        assert!(!s.up && !s.ready, "{s:?}");
        assert!(s.error.unwrap().contains("larger than"));
    }
}
