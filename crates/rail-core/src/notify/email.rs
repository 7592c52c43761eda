//! Email over SMTP with lettre: STARTTLS (required, never silently skipped), implicit TLS, or plain, with
//! authentication when a username is configured.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{email_message, error_chain, AttemptError, Notification};
use crate::config::{EmailConfig, SmtpSecurity};

/// A message and the transport that sends it, built once and reused by every attempt.
pub(super) struct Prepared {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    message: Message,
}

/// Build the message and the transport; what fails here (a bad address, no server) fails every attempt.
pub(super) fn prepare(
    cfg: &EmailConfig,
    n: &Notification,
    timeout: Duration,
) -> Result<Prepared, String> {
    if cfg.smtp_server.is_empty() {
        return Err("notifications.email.smtp_server is not set".into());
    }
    if cfg.from_email.is_empty() {
        return Err("notifications.email.from_email is not set".into());
    }
    if cfg.to_emails.is_empty() {
        return Err("notifications.email.to_emails is empty".into());
    }
    let from: Mailbox = cfg.from_email.parse().map_err(|_| {
        format!("invalid address `{}` in notifications.email.from_email", cfg.from_email)
    })?;
    let text = email_message(n);
    let mut builder = Message::builder().from(from).subject(text.subject);
    for to in &cfg.to_emails {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|_| format!("invalid address `{to}` in notifications.email.to_emails"))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(text.body)
        .map_err(|err| format!("cannot build the message: {}", error_chain(&err)))?;

    let host = cfg.smtp_server.as_str();
    let transport = match cfg.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
    }
    .map_err(|err| format!("cannot set up TLS for `{host}`: {}", error_chain(&err)))?;
    let mut transport = transport.port(cfg.smtp_port).timeout(Some(timeout));
    if !cfg.username.is_empty() {
        transport = transport
            .credentials(Credentials::new(cfg.username.clone(), cfg.password.expose().to_owned()));
    }
    Ok(Prepared { transport: transport.build(), message })
}

/// One attempt to hand the message to the server. Permanent SMTP answers (5xx) and what the server cannot
/// do for us (no STARTTLS, no usable AUTH mechanism) are not retried.
pub(super) async fn send(prepared: &Prepared) -> Result<(), AttemptError> {
    match prepared.transport.send(prepared.message.clone()).await {
        Ok(_) => Ok(()),
        Err(err) => Err(AttemptError {
            message: error_chain(&err),
            permanent: err.is_permanent() || err.is_client(),
        }),
    }
}
