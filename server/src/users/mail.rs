//! Mail: messages are queued in the outbox table inside the transaction that causes them, then
//! delivered by SMTP (`--smtp-url`) from a background task with retries. Without SMTP (Airplane
//! Mode) they stay in the outbox, readable by site admins, and their links are logged.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{Notify, watch};

use crate::clock::{Clock, MINUTE, SECOND};

/// How long a claimed message is left to the replica delivering it before another may try.
const CLAIM_LEASE: i64 = 2 * MINUTE;
use crate::store::{NewMail, OutboxRow, Store, Tx};
use crate::telemetry::Metrics;

/// Deliveries tried before a message is marked `failed`.
const MAX_ATTEMPTS: i64 = 8;
const POLL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    wake: Notify,
    /// How long delivering one message may take, from connecting to the server's last answer.
    timeout: Duration,
}

/// The longest `--smtp-timeout-secs`: a delivery must end well within its claim's lease, or another
/// replica could send the same message again.
pub const MAX_SMTP_TIMEOUT: Duration = Duration::from_secs(90);

impl Mailer {
    /// `smtp_url` as lettre reads it: `smtp://host:port` (plain), `smtp://host?tls=required`
    /// (STARTTLS), `smtps://host` (TLS), with optional `user:password@`.
    /// `timeout` bounds each delivery as a whole (at most [`MAX_SMTP_TIMEOUT`]): a server that
    /// accepts and then hangs, or answers a byte at a time, costs one attempt, not the outbox.
    pub fn new(smtp_url: Option<&str>, from: &str, timeout: Duration) -> anyhow::Result<Mailer> {
        let timeout = timeout.min(MAX_SMTP_TIMEOUT);
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --mail-from `{from}`: {e}"))?;
        let smtp = match smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("invalid --smtp-url: {e}"))?
                    .timeout(Some(timeout))
                    .build(),
            ),
            None => None,
        };
        Ok(Mailer {
            inner: Arc::new(Inner {
                smtp,
                from,
                wake: Notify::new(),
                timeout,
            }),
        })
    }

    pub fn has_smtp(&self) -> bool {
        self.inner.smtp.is_some()
    }

    /// Queues a message in the caller's transaction. Call [`Mailer::sent`] after the commit.
    pub async fn queue(&self, tx: &mut Tx, mail: &NewMail, now: i64) -> crate::store::Result<()> {
        let status = if self.has_smtp() { "pending" } else { "kept" };
        tx.enqueue_mail(&crate::secrets::new_id(), mail, status, now)
            .await
    }

    /// After a commit that queued `mail`: wakes the delivery task, or (no SMTP) logs the links so a
    /// developer in Airplane Mode can follow them.
    pub fn sent(&self, mail: &NewMail) {
        if self.has_smtp() {
            self.inner.wake.notify_one();
        } else {
            let links: Vec<&str> = mail
                .body
                .split_whitespace()
                .filter(|w| w.starts_with("http"))
                .collect();
            tracing::info!(to = %mail.to, subject = %mail.subject, links = ?links, "mail kept in the outbox (no SMTP configured)");
        }
    }

    /// Delivers queued mail until shutdown. Runs only when SMTP is configured.
    /// Counts attempts, the queue left after each pass and database errors in `metrics`.
    pub async fn run(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(smtp) = self.inner.smtp.clone() else {
            return;
        };
        loop {
            if store.is_prepared() {
                self.deliver_due(&smtp, &store, &clock, &metrics).await;
                match store.mail_queue().await {
                    Ok((waiting, failing)) => metrics.set_mail_queue(waiting, failing),
                    Err(e) => {
                        metrics.record_database_error();
                        tracing::warn!(error = %e, "cannot count the outbox");
                    }
                }
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn deliver_due(
        &self,
        smtp: &AsyncSmtpTransport<Tokio1Executor>,
        store: &Store,
        clock: &Clock,
        metrics: &Metrics,
    ) {
        let due = match store.due_mail(clock.now(), 50).await {
            Ok(due) => due,
            Err(e) => {
                metrics.record_database_error();
                tracing::warn!(error = %e, "cannot read the outbox");
                return;
            }
        };
        for row in due {
            // Several users replicas deliver from one outbox: each message goes to the one that
            // claims it.
            let now = clock.now();
            match store.claim_mail(&row.id, now, now + CLAIM_LEASE).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    metrics.record_database_error();
                    tracing::warn!(error = %e, "cannot claim a message in the outbox");
                    continue;
                }
            }
            let result = match self.message(&row) {
                Ok(message) => {
                    let timeout = self.inner.timeout;
                    match tokio::time::timeout(timeout, smtp.send(message)).await {
                        Ok(sent) => sent.map(|_| ()).map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "the SMTP server did not finish within {} s",
                            timeout.as_secs_f64()
                        )),
                    }
                }
                Err(e) => Err(e),
            };
            let now = clock.now();
            let marked = match result {
                Ok(()) => {
                    metrics.record_mail("sent");
                    tracing::info!(to = %row.to_email, subject = %row.subject, "mail sent");
                    store
                        .mark_mail_sent(&row.id, &redact_links(&row.body), now)
                        .await
                }
                Err(error) => {
                    metrics.record_mail("failed");
                    tracing::warn!(to = %row.to_email, %error, "mail delivery failed; will retry");
                    // 30 s, 1 min, 2 min, … capped at an hour.
                    let backoff = (30 * SECOND)
                        .saturating_mul(1 << row.attempts.clamp(0, 7))
                        .min(60 * MINUTE);
                    store
                        .mark_mail_failed(&row.id, &error, now + backoff, MAX_ATTEMPTS)
                        .await
                }
            };
            if let Err(e) = marked {
                metrics.record_database_error();
                tracing::warn!(error = %e, "cannot update the outbox");
            }
        }
    }

    fn message(&self, row: &OutboxRow) -> Result<Message, String> {
        let to: Mailbox = row
            .to_email
            .parse()
            .map_err(|e| format!("bad recipient: {e}"))?;
        Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .subject(row.subject.clone())
            .body(row.body.clone())
            .map_err(|e| format!("cannot build message: {e}"))
    }
}

/// A mail's body with its links (every word that carries a `token=`) replaced: what the outbox
/// keeps once a mail is delivered, and what site admins see of mail that SMTP delivers, so that
/// nobody with access to the outbox can use someone else's login, reset or invite link.
pub fn redact_links(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for (n, line) in body.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let words: Vec<&str> = line
            .split(' ')
            .map(|word| {
                if word.contains("token=") {
                    "[link removed]"
                } else {
                    word
                }
            })
            .collect();
        out.push_str(&words.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_are_redacted_and_the_rest_kept() {
        let body = "Confirm it within 24 hours:\n\nhttps://x.example/verify?token=shv_abc \nThanks";
        assert_eq!(
            super::redact_links(body),
            "Confirm it within 24 hours:\n\n[link removed] \nThanks"
        );
    }
}
