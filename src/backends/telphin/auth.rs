//! The OAuth2 token of a trusted application, and the Bearer call every request makes.

use super::*;

pub(super) struct Token {
    pub(super) value: Secret,
    /// `None`: the answer gave no `expires_in`; used until refused.
    pub(super) renew_at: Option<Instant>,
    pub(super) stale: bool,
}

#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) access_token: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) expires_in: Option<String>,
}

impl Telphin {
    pub(super) async fn bearer(&self) -> Result<Secret, Error> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && !t.stale
            && t.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    pub(super) async fn refused(&self, used: &Secret) {
        if let Some(t) = self.token.lock().await.as_mut()
            && t.value == *used
        {
            t.stale = true;
        }
    }

    pub(super) async fn fetch_token(&self) -> Result<Token, Error> {
        let url = self.http.url(TOKEN_PATH);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.expose()),
            ("client_secret", self.client_secret.expose()),
        ];
        // Asking for a token twice is harmless.
        let reply = self.http.send(Retry::Idempotent, &[], |c| c.post(&url).form(&form)).await?;
        let answer = Answer { redactor: self.http.redactor().clone(), reply };
        let status = answer.reply.status;
        if status.is_client_error() {
            let text = answer.text(error_of(&answer.reply.body).message.as_deref());
            return Err(
                answer.scrub(self.http.auth(&format!("token refused (HTTP {}): {text}", status.as_u16())))
            );
        }
        if !status.is_success() {
            return Err(answer.unexpected(&self.http, error_of(&answer.reply.body).message.as_deref()));
        }
        let t: TokenAnswer = answer.json(&self.http)?;
        if t.access_token.is_empty() {
            return Err(self.http.protocol("the token answer carries an empty access_token"));
        }
        // One SDK's fixture answers without `expires_in`: then the token is used until
        // refused.
        let renew_at = t.expires_in.and_then(|s| s.trim().parse::<u64>().ok()).map(|secs| {
            let life = Duration::from_secs(secs);
            Instant::now() + (life - RENEW_MARGIN.min(life / 2))
        });
        Ok(Token { value: Secret::new(t.access_token), renew_at, stale: false })
    }

    /// Sends an authenticated request; on a 401 fetches a new token once and sends again.
    pub(super) async fn call(
        &self,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Answer, Error> {
        let counted = |c: &Client| {
            self.sent.fetch_add(1, Ordering::Relaxed);
            build(c)
        };
        bearer_call(
            &self.http,
            retry,
            secrets,
            counted,
            || self.bearer(),
            |used| async move {
                self.refused(&used).await;
                true
            },
            |answer| error_of(&answer.reply.body).message.unwrap_or_default(),
        )
        .await
    }
}
