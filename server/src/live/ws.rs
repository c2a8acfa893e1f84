//! `GET /ws`: the dashboard's WebSocket. The handshake is refused before the upgrade when the
//! Origin is not one of the site's (403) or there is no signed-in session (401). After it, the
//! socket replays the outbox events the browser missed (it says the last number it saw, as
//! `?after=`), says hello, and streams. It pings and sends a heartbeat frame every few
//! seconds, drops a peer that stops answering or cannot take a frame, and closes when its
//! session ends (code 4001) or the server stops (1001).

use std::sync::Arc;
use std::time::Duration;

use app::auth::ssr::{check_session, SessionCheck, SessionTimes};
use app::auth::Role;
use app::live::ssr::session_hash;
use app::live::{Frame, LiveEvent};
use app::state::SessionSettings;
use axum::body::Bytes;
use axum::extract::ws::{
    rejection::WebSocketUpgradeRejection, CloseFrame, Message, Utf8Bytes, WebSocket,
    WebSocketUpgrade,
};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_sessions::session::Id;
use tower_sessions::{Session, SessionStore};
use uuid::Uuid;

use super::hub::{CloseReason, Hub, Slot};
use super::relay;
use crate::origin::{self, AllowedOrigins};
use crate::session_store::DbSessionStore;

/// Close code: the login session ended; the browser goes to the sign-in page.
pub const SESSION_ENDED: u16 = 4001;

/// Timing and limits of dashboard sockets.
#[derive(Clone, Debug)]
pub struct SocketSettings {
    /// Frames a socket may have waiting before it is told to reload instead.
    pub buffer: usize,
    /// How often to ping and send a heartbeat frame.
    pub ping_every: Duration,
    /// A peer silent this long (no pong) is dropped.
    pub dead_after: Duration,
    /// A peer that cannot take one frame in this long is dropped.
    pub write_timeout: Duration,
    /// Most events replayed on (re)connect; a browser further behind reloads over HTTP.
    pub replay_limit: i64,
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            buffer: 512,
            ping_every: Duration::from_secs(25),
            dead_after: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            replay_limit: 1000,
        }
    }
}

/// What the endpoint needs.
pub struct WsContext {
    pub hub: Arc<Hub>,
    pub db: DatabaseConnection,
    pub sessions: SessionSettings,
    pub store: DbSessionStore,
    pub origins: AllowedOrigins,
    pub settings: SocketSettings,
    pub shutdown: CancellationToken,
}

#[derive(Deserialize)]
pub struct WsParams {
    /// The last outbox sequence number the browser has applied.
    after: Option<i64>,
}

fn refuse(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

pub async fn handler(
    State(ctx): State<Arc<WsContext>>,
    session: Session,
    headers: HeaderMap,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let metrics = ctx.hub.metrics();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if !origin::is_allowed(&ctx.origins, origin, site) {
        metrics.ws_refused.inc();
        tracing::warn!(
            origin = origin.unwrap_or("-").escape_debug().to_string(),
            "cross-origin WebSocket refused"
        );
        return refuse(
            StatusCode::FORBIDDEN,
            "Cross-origin WebSocket refused: this origin is not allowed here.",
        );
    }
    let now = Utc::now().timestamp();
    let (user, times) = match check_session(&ctx.db, &session, &ctx.sessions, now).await {
        Ok(SessionCheck::SignedIn(user, times)) => (user, times),
        Ok(_) => {
            metrics.ws_refused.inc();
            return refuse(
                StatusCode::UNAUTHORIZED,
                "Sign in to open the live connection.",
            );
        }
        Err(_) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
    };
    let after = match params {
        Ok(Query(WsParams { after })) if after.is_none_or(|a| a >= 0) => after,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "`after` must be a whole number, 0 or more: the last event number seen.",
            )
        }
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let session_id = session.id().map(|id| id.to_string());
    let admin = Role::parse(&user.role) == Some(Role::Admin);
    upgrade
        // Browsers send nothing but control frames here; small buffers keep 10,000 sockets
        // cheap.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(4 * 1024)
        .max_frame_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            let connection = Connection {
                ctx: &ctx,
                socket,
                user: user.id,
                admin,
                session_id,
            };
            connection.serve(times, after).await
        })
}

struct Connection<'a> {
    ctx: &'a WsContext,
    socket: WebSocket,
    user: Uuid,
    admin: bool,
    session_id: Option<String>,
}

/// How a socket ends.
enum End {
    /// The browser closed it or went away.
    Peer,
    /// The server closes it with this code.
    Close(u16, &'static str),
    /// The peer stopped answering or could not take a frame.
    Dropped(&'static str),
}

impl Connection<'_> {
    async fn serve(mut self, times: SessionTimes, after: Option<i64>) {
        let hash = self.session_id.as_deref().map(session_hash);
        let (slot, head) = self.ctx.hub.register(self.user, self.admin, hash);
        let end = self.run(&slot, head, after, times).await;
        self.ctx.hub.unregister(&slot);
        match end {
            End::Peer => {}
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                let _ = tokio::time::timeout(
                    self.ctx.settings.write_timeout,
                    self.socket.send(Message::Close(Some(frame))),
                )
                .await;
            }
            End::Dropped(why) => {
                self.ctx.hub.metrics().ws_dropped.inc();
                tracing::debug!(user = %self.user, why, "live socket dropped");
            }
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        match tokio::time::timeout(self.ctx.settings.write_timeout, self.socket.send(message)).await
        {
            Ok(Ok(())) => {
                self.ctx.hub.metrics().ws_frames.inc();
                Ok(())
            }
            Ok(Err(_)) => Err(End::Peer),
            Err(_) => Err(End::Dropped("could not take a frame in time")),
        }
    }

    async fn send_event(&mut self, seq: i64, event: LiveEvent) -> Result<(), End> {
        let text = serde_json::to_string(&Frame { seq, event }).unwrap_or_default();
        self.send(Message::Text(text.into())).await
    }

    /// Sends what the browser missed, up to `head`; returns the position it is at then.
    async fn replay(&mut self, head: i64, after: Option<i64>) -> Result<i64, End> {
        let Some(after) = after else {
            return Ok(head);
        };
        if after >= head {
            return Ok(after);
        }
        let limit = self.ctx.settings.replay_limit;
        let oldest = relay::oldest_seq(&self.ctx.db).await;
        let events =
            relay::visible_after(&self.ctx.db, self.user, self.admin, after, head, limit + 1).await;
        match (oldest, events) {
            // Everything after `after` is still kept, and not too much of it.
            (Ok(oldest), Ok(events))
                if oldest.is_some_and(|o| o <= after + 1) && events.len() as i64 <= limit =>
            {
                for e in events {
                    let frame = format!("{{\"seq\":{},\"event\":{}}}", e.seq, e.payload);
                    self.send(Message::Text(frame.into())).await?;
                }
            }
            _ => self.send_event(0, LiveEvent::Resync).await?,
        }
        Ok(head)
    }

    async fn run(
        &mut self,
        slot: &Slot,
        head: i64,
        after: Option<i64>,
        times: SessionTimes,
    ) -> End {
        match self.stream(slot, head, after, times).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn stream(
        &mut self,
        slot: &Slot,
        head: i64,
        after: Option<i64>,
        times: SessionTimes,
    ) -> Result<std::convert::Infallible, End> {
        let mut position = self.replay(head, after).await?;
        self.send_event(0, LiveEvent::Hello(position)).await?;
        let settings = self.ctx.settings.clone();
        let mut ping =
            tokio::time::interval_at(Instant::now() + settings.ping_every, settings.ping_every);
        let mut last_heard = Instant::now();
        let mut deadline = self.deadline(times);
        loop {
            tokio::select! {
                _ = slot.ready() => {
                    let pending = slot.take();
                    if let Some(reason) = pending.close {
                        return Err(match reason {
                            CloseReason::SessionEnded => End::Close(SESSION_ENDED, "session ended"),
                            CloseReason::ShuttingDown => End::Close(1001, "server restarting"),
                        });
                    }
                    if pending.lagged {
                        self.send_event(0, LiveEvent::Resync).await?;
                    }
                    for (seq, frame) in pending.frames {
                        if seq > 0 {
                            if seq <= position {
                                continue;
                            }
                            position = seq;
                        }
                        self.send(Message::Text(frame)).await?;
                    }
                }
                incoming = self.socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(End::Peer),
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        return Err(End::Close(1003, "this socket only sends"));
                    }
                    Some(Ok(_)) => last_heard = Instant::now(),
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > settings.dead_after {
                        return Err(End::Dropped("no answer to pings"));
                    }
                    self.send(Message::Ping(Bytes::new())).await?;
                    self.send_event(0, LiveEvent::Heartbeat).await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    match session_times(self.ctx, self.session_id.as_deref()).await {
                        Some(times) if self.deadline(times) > Instant::now() => {
                            deadline = self.deadline(times);
                        }
                        _ => return Err(End::Close(SESSION_ENDED, "session ended")),
                    }
                }
                _ = self.ctx.shutdown.cancelled() => {
                    return Err(End::Close(1001, "server restarting"));
                }
            }
        }
    }

    /// When the session ends unless used meanwhile (checked again then).
    fn deadline(&self, times: SessionTimes) -> Instant {
        let left = times.deadline(&self.ctx.sessions) - Utc::now().timestamp();
        Instant::now() + Duration::from_secs(left.max(0) as u64 + 1)
    }
}

/// The session's clocks as stored now; `None` when it is gone.
async fn session_times(ctx: &WsContext, session_id: Option<&str>) -> Option<SessionTimes> {
    let id: Id = session_id?.parse().ok()?;
    let record = ctx.store.load(&id).await.ok()??;
    SessionTimes::of_record(&record.data)
}
