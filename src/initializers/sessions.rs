//! Opens the store named by `settings.sessions` before the server starts and checks that
//! it answers; the session layer itself is part of the app's one stack around the router
//! (`crate::middleware`). `cargo loco doctor` asks it whether the store answers.

use async_trait::async_trait;
use loco_rs::{
    app::{AppContext, Initializer},
    config::Config,
    doctor::{Check, CheckStatus},
    Error, Result,
};

use crate::sessions::Sessions;

pub struct SessionsInitializer;

/// Loco's `remote_ip` middleware believes one header from any peer; Tessera's trusted
/// proxy list (`settings.sessions.trusted_proxies`) decides the client's address instead.
/// With both, the operator would think the middleware is in charge: refuse to start.
///
/// # Errors
/// One line naming both keys.
pub fn refuse_loco_remote_ip(config: &Config) -> std::result::Result<(), String> {
    if config
        .server
        .middlewares
        .remote_ip
        .as_ref()
        .is_some_and(|remote_ip| remote_ip.enable)
    {
        return Err(
            "server.middlewares.remote_ip: Loco's remote IP middleware is replaced by \
             settings.sessions.trusted_proxies (TRUSTED_PROXIES); remove it and list your \
             proxies there (README, Behind a reverse proxy)"
                .to_string(),
        );
    }
    Ok(())
}

#[async_trait]
impl Initializer for SessionsInitializer {
    fn name(&self) -> String {
        "sessions".to_string()
    }

    async fn before_run(&self, ctx: &AppContext) -> Result<()> {
        refuse_loco_remote_ip(&ctx.config).map_err(Error::Message)?;
        let sessions = Sessions::from_context(ctx).map_err(|e| Error::Message(e.to_string()))?;
        sessions
            .backend()
            .check_at_start()
            .await
            .map_err(|e| Error::Message(e.to_string()))?;
        // Install the metrics recorder before the first request counts anything, and keep
        // its histograms from piling up samples between scrapes.
        crate::sessions::metrics::spawn_upkeep();
        let config = sessions.config();
        tracing::info!(
            store = %config.store.kind,
            cookie = %config.cookie.name,
            idle_timeout_secs = config.policy.idle_timeout().as_secs(),
            absolute_lifetime_secs = config.policy.absolute_lifetime().as_secs(),
            touch_interval_secs = config.policy.touch_interval().as_secs(),
            "sessions ready"
        );
        if !config.cookie.secure {
            tracing::warn!(
                "session cookie is sent without Secure (plain http); production refuses this"
            );
        }
        Ok(())
    }

    async fn check(&self, ctx: &AppContext) -> Result<Option<Check>> {
        let sessions = match Sessions::from_context(ctx) {
            Ok(sessions) => sessions,
            Err(reason) => {
                return Ok(Some(Check {
                    status: CheckStatus::NotOk,
                    message: "session store: cannot be configured".to_string(),
                    description: Some(reason.to_string()),
                }))
            }
        };
        let health = sessions.health().await;
        Ok(Some(Check {
            status: if health.ok {
                CheckStatus::Ok
            } else {
                CheckStatus::NotOk
            },
            message: format!(
                "session store ({}): {} in {:.1} ms",
                health.store,
                if health.ok {
                    "answers"
                } else {
                    "does not answer"
                },
                health.latency_ms
            ),
            description: (!health.ok).then_some(health.detail),
        }))
    }
}
