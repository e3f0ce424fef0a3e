//! Helpers the APIO and Telphin backends share beyond HTTP: answers read with every
//! secret of their request scrubbed, password generation, the operation an unwritable
//! field would need.

use rand::{Rng, seq::SliceRandom};
use serde::de::DeserializeOwned;

use reqwest::{Client, RequestBuilder, StatusCode};

use super::{
    Error, Secret,
    http::{Http, Redactor, Reply, Retry},
};
use crate::plan::Field;

/// Scrubs every text of an error with `r` (the Http constructors only know the
/// credentials; a request may also carry a token or a password).
pub fn scrub(err: Error, r: &Redactor) -> Error {
    match err {
        Error::Transient { system, detail, retry_after } => {
            Error::Transient { system, detail: r.redact(&detail), retry_after }
        }
        Error::Auth { system, detail } => Error::Auth { system, detail: r.redact(&detail) },
        Error::Validation { system, field, message } => {
            Error::Validation { system, field, message: r.redact(&message) }
        }
        Error::NotFound { system, id } => Error::NotFound { system, id: r.redact(&id) },
        Error::Conflict { system, detail } => Error::Conflict { system, detail: r.redact(&detail) },
        Error::Protocol { system, detail } => Error::Protocol { system, detail: r.redact(&detail) },
        Error::Config(detail) => Error::Config(r.redact(&detail)),
        other @ (Error::Unsupported { .. } | Error::Credentials { .. } | Error::Unfit { .. }) => other,
    }
}

/// A password of `len` characters with at least two of each class.
pub fn random_password(len: usize, specials: &[u8]) -> Secret {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    let mut rng = rand::rng();
    let mut pick = |set: &[u8]| char::from(set[rng.random_range(0..set.len())]);
    let mut chars: Vec<char> = Vec::with_capacity(len);
    for set in [UPPER, LOWER, DIGITS, specials] {
        chars.push(pick(set));
        chars.push(pick(set));
    }
    let all = [UPPER, LOWER, DIGITS].concat();
    while chars.len() < len {
        chars.push(pick(&all));
    }
    chars.shuffle(&mut rand::rng());
    Secret::new(chars.into_iter().collect::<String>())
}

/// The operation an unwritable field would need, for [`Error::Unsupported`].
pub fn unsupported(field: &Field) -> &'static str {
    match field {
        Field::DisplayName => "change a display name",
        Field::GivenName => "change a given name",
        Field::FamilyName => "change a family name",
        Field::Email => "change an e-mail address",
        Field::Mobile => "change a mobile number",
        Field::Login => "change a login",
        Field::Enabled => "enable or disable an account",
        Field::Extension => "change an extension",
        Field::Password => "change a password",
        Field::Setting(_) => "change this setting",
    }
}

/// The most of a server's own message an error quotes: enough to read, not enough for
/// a server to fill a status condition.
const MESSAGE_CHARS: usize = 300;

/// `message`, cut to [`MESSAGE_CHARS`] on one line.
pub fn clip(message: &str) -> String {
    let mut cut: String = message.chars().filter(|c| !c.is_control()).take(MESSAGE_CHARS).collect();
    if message.chars().count() > MESSAGE_CHARS {
        cut.push('…');
    }
    cut
}

/// An answer with the redactor that knows every secret of its request (credentials,
/// the token used, a password being set), for the errors built from it.
pub struct Answer {
    pub reply: Reply,
    pub redactor: Redactor,
}

impl Answer {
    /// The server's own `message`, else the body, scrubbed of every secret of the
    /// request and then cut short (in that order: a cut through a secret would leave its
    /// start).
    pub fn text(&self, message: Option<&str>) -> String {
        let raw = match message {
            Some(m) => m.to_owned(),
            None => String::from_utf8_lossy(&self.reply.body).into_owned(),
        };
        clip(&self.redactor.redact(&raw))
    }

    /// The body as `T`; anything else is [`Error::Protocol`].
    pub fn json<T: DeserializeOwned>(&self, http: &Http) -> Result<T, Error> {
        serde_json::from_slice(&self.reply.body).map_err(|e| {
            let detail = format!(
                "HTTP {} with a body that is not the expected JSON ({e}): {}",
                self.reply.status.as_u16(),
                self.text(None)
            );
            self.scrub(http.protocol(&detail))
        })
    }

    /// A status the API does not use for this request.
    pub fn unexpected(&self, http: &Http, message: Option<&str>) -> Error {
        self.scrub(http.protocol(&format!("HTTP {}: {}", self.reply.status.as_u16(), self.text(message))))
    }

    pub fn scrub(&self, err: Error) -> Error {
        scrub(err, &self.redactor)
    }
}

/// Sends a request with a Bearer token from `token`; on a 401 tells `refused` (which
/// forgets that token and says whether a new one may help) and sends once more: a 401
/// did no work, so even a create may go again. The answer is read with the token and
/// `secrets` scrubbed; `message` quotes the server's reason for a final refusal.
pub async fn bearer_call<T, R>(
    http: &Http,
    retry: Retry,
    secrets: &[&Secret],
    build: impl Fn(&Client) -> RequestBuilder,
    token: impl Fn() -> T,
    refused: impl Fn(Secret) -> R,
    message: impl Fn(&Answer) -> String,
) -> Result<Answer, Error>
where
    T: Future<Output = Result<Secret, Error>>,
    R: Future<Output = bool>,
{
    let mut renewed = false;
    loop {
        let token = token().await?;
        let mut known: Vec<&Secret> = secrets.to_vec();
        known.push(&token);
        let reply = http.send(retry, &known, |c| build(c).bearer_auth(token.expose())).await?;
        let mut redactor = http.redactor().clone();
        redactor.extend(known);
        let answer = Answer { reply, redactor };
        if answer.reply.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        if renewed || !refused(token.clone()).await {
            let text = message(&answer);
            return Err(answer.scrub(http.auth(&format!("token refused: {text}"))));
        }
        renewed = true;
    }
}
