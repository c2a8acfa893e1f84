//! Server side of authentication: password hashing, sessions, and the checks every server
//! function starts with.

use std::net::SocketAddr;
use std::time::Instant;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use axum::extract::ConnectInfo;
use chrono::Utc;
use password_hash::{rand_core::OsRng, SaltString};
use sea_orm::{
    sea_query::{Expr, ExprTrait, Func},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use tower_sessions::Session;
use uuid::Uuid;

use super::{CurrentUser, Role};
use crate::entities::{sessions, users};
use crate::error::AppError;
use crate::state::{state, SessionSettings};

/// The session key holding the signed-in user's id (the session store indexes it).
pub const USER_ID: &str = "user_id";
pub const AUTH_AT: &str = "auth_at";
pub const SEEN_AT: &str = "seen_at";
/// How often an active session's idle deadline is pushed back (one store write at most).
const TOUCH_EVERY_SECS: i64 = 60;

/// argon2id at the OWASP recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes running at once: each takes 19 MiB and a core for tens of milliseconds, so more than
/// one per core only adds memory. The rest queue here.
/// A slot is held by the hashing task itself, so a request that is dropped midway (the client
/// went away) does not free it while its hash still runs.
async fn hashing_slot() -> Option<tokio::sync::OwnedSemaphorePermit> {
    static SLOTS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            std::sync::Arc::new(tokio::sync::Semaphore::new(cores))
        })
        .clone()
        .acquire_owned()
        .await
        .ok()
}

/// Hashes on a blocking thread: one hash takes tens of milliseconds.
pub async fn hash_password(password: String) -> Result<String, AppError> {
    let slot = hashing_slot().await.ok_or(AppError::Internal)?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "hashing task failed");
        AppError::Internal
    })?
    .map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        AppError::Internal
    })
}

/// Verifies on a blocking thread; a malformed stored hash counts as a mismatch (and is logged).
pub async fn verify_password(password: String, hash: String) -> bool {
    let Some(slot) = hashing_slot().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        match PasswordHash::new(&hash) {
            Ok(parsed) => argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "stored password hash is malformed");
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Finds a user by username, ignoring case.
pub async fn find_by_username<C: ConnectionTrait>(
    db: &C,
    username: &str,
) -> Result<Option<users::Model>, AppError> {
    // No username holds a control character, and PostgreSQL text cannot even hold NUL.
    if username.chars().any(char::is_control) {
        return Ok(None);
    }
    Ok(users::Entity::find()
        .filter(
            Expr::expr(Func::lower(Expr::col(users::Column::Username)))
                .eq(username.trim().to_ascii_lowercase()),
        )
        .one(db)
        .await?)
}

impl From<users::Model> for CurrentUser {
    fn from(user: users::Model) -> Self {
        CurrentUser {
            id: user.id,
            role: Role::parse(&user.role).unwrap_or(Role::Client),
            username: user.username,
            display_name: user.display_name,
        }
    }
}

async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|e| {
        tracing::error!(error = %e, "no session layer on this request");
        AppError::Internal
    })
}

/// The address the sign-in came from: the peer's, or, when the peer is a trusted proxy, the
/// one it says it forwarded for.
async fn client_address(trusted_proxies: &[ipnet::IpNet]) -> String {
    let Ok(ConnectInfo(peer)) = leptos_axum::extract::<ConnectInfo<SocketAddr>>().await else {
        return "unknown".to_owned();
    };
    let forwarded = leptos_axum::extract::<http::HeaderMap>()
        .await
        .ok()
        .map(|headers| {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
        });
    throttle_key(client_ip(peer.ip(), forwarded.as_deref(), trusted_proxies))
}

/// The throttle's name for a client address: an IPv4 address as it is, an IPv6 one by its /64
/// (one host usually holds a whole /64, and could take a fresh address for every guess).
pub fn throttle_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, 64)
            .map(|net| net.trunc().to_string())
            .unwrap_or_else(|_| v6.to_string()),
        v4 => v4.to_string(),
    }
}

/// Who a request is from. `X-Forwarded-For` is believed only from a trusted proxy, and only up
/// to the first address (from the right, the proxy's end) that is not itself a trusted proxy:
/// whatever is left of that, the client wrote.
pub fn client_ip(
    peer: std::net::IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for hop in forwarded_for.unwrap_or_default().rsplit(',') {
        let hop = hop.trim();
        let parsed = hop
            .parse::<std::net::IpAddr>()
            .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
        let Ok(ip) = parsed.map(|ip| ip.to_canonical()) else {
            // A hop a trusted proxy wrote but no one can read: go no further.
            return nearest;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// Checks the credentials (through the login throttle) and starts a fresh session.
pub async fn sign_in(username: &str, password: &str) -> Result<CurrentUser, AppError> {
    let mut missing = Vec::new();
    if username.trim().is_empty() {
        missing.push(crate::error::FieldError::new(
            "username",
            "Enter your username.",
        ));
    }
    if password.is_empty() {
        missing.push(crate::error::FieldError::new(
            "password",
            "Enter your password.",
        ));
    }
    if !missing.is_empty() {
        return Err(AppError::Validation(missing));
    }
    // No account has a longer name or password: refuse before the throttle keeps the text.
    if password.chars().count() > crate::validate::PASSWORD_MAX
        || username.trim().len() > crate::validate::USERNAME_MAX
    {
        return Err(AppError::InvalidCredentials);
    }

    let state = state()?;
    let account = username.trim().to_ascii_lowercase();
    let address = client_address(&state.trusted_proxies).await;
    if let Err(wait) = state.throttle.begin(&account, &address, Instant::now()) {
        tracing::info!(%address, "sign-in throttled");
        return Err(AppError::TooManyAttempts {
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        });
    }

    let user = find_by_username(&state.db, &account).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.to_string());
    let matches = verify_password(password.to_owned(), hash).await;
    let user = match (user, matches) {
        (Some(user), true) => user,
        _ => {
            // Counted by `begin` already; the wait starts now.
            state.throttle.failed(&account, &address, Instant::now());
            tracing::info!(%address, "failed sign-in");
            return Err(AppError::InvalidCredentials);
        }
    };
    state.throttle.succeeded(&account, &address);

    let session = session().await?;
    session.clear().await;
    session.cycle_id().await?;
    let now = Utc::now().timestamp();
    session.insert(USER_ID, user.id).await?;
    session.insert(AUTH_AT, now).await?;
    session.insert(SEEN_AT, now).await?;
    tracing::info!(user = %user.id, "signed in");
    let user = CurrentUser::from(user);
    RequestUser::set(Some(user.clone())).await;
    Ok(user)
}

/// Changes the signed-in user's password after checking the current one (through the login
/// throttle, so a borrowed session cannot guess it), and ends every other session of theirs.
pub async fn change_password(current: &str, new: &str, confirm: &str) -> Result<(), AppError> {
    use crate::validate::{self, Fields};
    use sea_orm::{ActiveModelTrait, Set};

    let user = current_user().await?;
    let mut fields = Fields::default();
    if current.is_empty() {
        fields.check::<()>("current", Err("Enter your current password.".into()));
    }
    if let Some(new) = fields.check("new", validate::password(new)) {
        if new != confirm {
            fields.check::<()>("confirm", Err("The two new passwords differ.".into()));
        } else if new == current {
            fields.check::<()>(
                "new",
                Err("Choose a password other than your current one.".into()),
            );
        }
    }
    fields.finish()?;
    let wrong = || AppError::field("current", "This is not your current password.");
    if current.chars().count() > crate::validate::PASSWORD_MAX {
        return Err(wrong());
    }

    let state = state()?;
    let account = user.username.to_ascii_lowercase();
    let address = client_address(&state.trusted_proxies).await;
    if let Err(wait) = state.throttle.begin(&account, &address, Instant::now()) {
        return Err(AppError::TooManyAttempts {
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        });
    }
    let model = users::Entity::find_by_id(user.id)
        .one(&state.db)
        .await?
        .ok_or(AppError::Unauthorized)?;
    if !verify_password(current.to_owned(), model.password_hash.clone()).await {
        state.throttle.failed(&account, &address, Instant::now());
        tracing::info!(user = %user.id, %address, "wrong current password");
        return Err(wrong());
    }
    state.throttle.succeeded(&account, &address);
    let hash = hash_password(new.to_owned()).await?;
    let this_session = session().await?.id().map(|id| id.to_string());

    let txn = crate::sql::begin_write(&state.db).await?;
    let mut model: users::ActiveModel = model.into();
    model.password_hash = Set(hash);
    model.update(&txn).await?;
    // One statement: a session created meanwhile (a sign-in that checked the old password
    // just before) cannot slip between a read and a delete.
    let mut sql = crate::sql::Sql::new(txn.get_database_backend());
    sql.push("DELETE FROM sessions WHERE user_id = ")
        .param(user.id)
        .push(" AND id <> ")
        .param(this_session.clone().unwrap_or_default())
        .push(" RETURNING id");
    let others: Vec<String> = txn
        .query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?;
    let ended: Vec<_> = others
        .iter()
        .map(|id| {
            crate::live::ssr::Outgoing::private(
                user.id,
                crate::live::LiveEvent::SessionEnded(Some(crate::live::ssr::session_hash(id))),
            )
        })
        .collect();
    crate::live::ssr::append(&txn, &ended).await?;
    txn.commit().await?;
    // This server refuses the ended sessions at once; the others when the events reach them.
    state.live.sessions().ended(user.id, None);
    state.live.wake();
    tracing::info!(user = %user.id, sessions_ended = others.len(), "password changed");
    Ok(())
}

pub async fn sign_out() -> Result<(), AppError> {
    session().await?.flush().await?;
    RequestUser::set(None).await;
    Ok(())
}

/// The two clocks of a signed-in session (seconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimes {
    pub auth_at: i64,
    pub seen_at: i64,
}

impl SessionTimes {
    /// When the session ends unless it is used again: at its idle or its absolute timeout.
    pub fn deadline(&self, settings: &SessionSettings) -> i64 {
        let idle = settings.idle_timeout.as_secs() as i64;
        let absolute = settings.absolute_timeout.as_secs() as i64;
        std::cmp::min(self.seen_at + idle, self.auth_at + absolute)
    }
}

impl SessionTimes {
    /// The clocks stored in a session record's data, if it is signed in.
    pub fn of_record(data: &std::collections::HashMap<String, serde_json::Value>) -> Option<Self> {
        data.get(USER_ID)?;
        Some(SessionTimes {
            auth_at: data.get(AUTH_AT)?.as_i64()?,
            seen_at: data.get(SEEN_AT)?.as_i64()?,
        })
    }
}

/// What a session is worth right now.
pub enum SessionCheck {
    Anonymous,
    /// Past a timeout, or its user is gone: it should be ended.
    Over,
    SignedIn(users::Model, SessionTimes),
}

/// Checks `session` against its timeouts and its user, changing nothing.
pub async fn check_session<C: ConnectionTrait>(
    db: &C,
    session: &Session,
    settings: &SessionSettings,
    now: i64,
) -> Result<SessionCheck, AppError> {
    let Some(user_id) = session.get::<Uuid>(USER_ID).await? else {
        return Ok(SessionCheck::Anonymous);
    };
    let times = SessionTimes {
        auth_at: session.get(AUTH_AT).await?.unwrap_or(0),
        seen_at: session.get(SEEN_AT).await?.unwrap_or(0),
    };
    if now > times.deadline(settings) {
        return Ok(SessionCheck::Over);
    }
    Ok(match users::Entity::find_by_id(user_id).one(db).await? {
        Some(user) => SessionCheck::SignedIn(user, times),
        None => SessionCheck::Over,
    })
}

/// The signed-in user as this request found them, so that the header, the page and its data
/// look the session's user up once between them. The server provides one per request, beside
/// the app state; signing in or out sets it once the session says so.
#[derive(Clone, Default)]
pub struct RequestUser(std::sync::Arc<tokio::sync::Mutex<Option<Option<CurrentUser>>>>);

impl RequestUser {
    /// From now on in this request, the signed-in user is `user`.
    async fn set(user: Option<CurrentUser>) {
        if let Some(memo) = leptos::prelude::use_context::<RequestUser>() {
            *memo.0.lock().await = Some(user);
        }
    }
}

/// The signed-in user of this request, if any. Ends the session when it is past its idle or
/// absolute timeout, or when its user no longer exists.
pub async fn optional_user() -> Result<Option<CurrentUser>, AppError> {
    let Some(memo) = leptos::prelude::use_context::<RequestUser>() else {
        return look_up_user().await;
    };
    // Held while looking up: a second asker in this request waits for the first answer.
    let mut known = memo.0.lock().await;
    if let Some(user) = known.as_ref() {
        return Ok(user.clone());
    }
    let user = look_up_user().await?;
    *known = Some(user.clone());
    Ok(user)
}

async fn look_up_user() -> Result<Option<CurrentUser>, AppError> {
    let state = state()?;
    let session = session().await?;
    let now = Utc::now().timestamp();
    let cache = state.live.sessions();
    // The cookie's id: reading it does not load the session.
    let id = session.id().map(|id| id.to_string());
    if let Some((user, times)) = id.as_deref().and_then(|id| cache.get(id, Instant::now())) {
        // Within its timeouts and not yet due for a touch: nothing to read or write.
        if now <= times.deadline(&state.sessions) && now - times.seen_at < TOUCH_EVERY_SECS {
            return Ok(Some(user));
        }
    }
    // Taken before the read, and the entry's age counted from here: an end that no event
    // announces is trusted for no longer than the lifetime.
    let (ticket, checked) = (cache.ticket(), Instant::now());
    match check_session(&state.db, &session, &state.sessions, now).await? {
        SessionCheck::Anonymous => Ok(None),
        SessionCheck::Over => {
            session.flush().await?;
            Ok(None)
        }
        SessionCheck::SignedIn(user, times) => {
            let user = CurrentUser::from(user);
            if now - times.seen_at >= TOUCH_EVERY_SECS {
                // Not kept in memory: the touch is saved only when the response is sent, and
                // may not be. The next request checks again and finds it saved.
                session.insert(SEEN_AT, now).await?;
            } else if let Some(id) = &id {
                cache.put(ticket, id, user.clone(), times, checked);
            }
            Ok(Some(user))
        }
    }
}

/// The signed-in user, or `Unauthorized`.
pub async fn current_user() -> Result<CurrentUser, AppError> {
    optional_user().await?.ok_or(AppError::Unauthorized)
}

/// The signed-in admin, or `Unauthorized` / `Forbidden`.
pub async fn require_admin() -> Result<CurrentUser, AppError> {
    let user = current_user().await?;
    if user.role == Role::Admin {
        Ok(user)
    } else {
        Err(AppError::Forbidden)
    }
}

/// Ends every session of `user_id` (password reset, account deletion), and with them the
/// user's live sockets on every server. Inside the caller's transaction; wake the relay after.
pub async fn end_sessions_of<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<(), AppError> {
    sessions::Entity::delete_many()
        .filter(sessions::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    crate::live::ssr::append(
        db,
        &[crate::live::ssr::Outgoing::private(
            user_id,
            crate::live::LiveEvent::SessionEnded(None),
        )],
    )
    .await?;
    Ok(())
}

/// A redirect target is followed only if it stays on this site: one `/`, then a character that
/// is neither `/` nor `\` (browsers read both as the start of another host), and no control
/// character anywhere (browsers drop tabs and newlines, so `/\t/evil.example` would become
/// `//evil.example`; a newline cannot go into a header at all).
pub fn is_local_path(path: &str) -> bool {
    let mut chars = path.chars();
    chars.next() == Some('/')
        && chars.next().is_some_and(|second| second != '/')
        // A backslash is refused anywhere, which covers the second character too.
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

/// Creates an account; used by admin bootstrap, demo seeding and the admin area.
pub async fn insert_user<C: ConnectionTrait>(
    db: &C,
    username: &str,
    display_name: &str,
    role: Role,
    password: &str,
) -> Result<users::Model, AppError> {
    use sea_orm::{ActiveModelTrait, Set};
    let password_hash = hash_password(password.to_owned()).await?;
    let model = users::ActiveModel {
        id: Set(Uuid::new_v4()),
        username: Set(username.to_owned()),
        display_name: Set(display_name.to_owned()),
        role: Set(role.as_str().to_owned()),
        password_hash: Set(password_hash),
        created_at: Set(Utc::now()),
    };
    model.insert(db).await.map_err(username_conflict)
}

/// A write to `users` that broke the case-insensitive unique username is the user's mistake,
/// told at the username field; anything else is internal.
pub fn username_conflict(err: sea_orm::DbErr) -> AppError {
    if matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    ) {
        AppError::field("username", "This username is already taken.")
    } else {
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::{client_ip, is_local_path};

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        // (peer, X-Forwarded-For, client)
        let cases = [
            ("203.0.113.9", Some("198.51.100.1"), "203.0.113.9"),
            ("10.0.0.2", None, "10.0.0.2"),
            ("10.0.0.2", Some("198.51.100.1"), "198.51.100.1"),
            // The client wrote the first entry itself: it is not believed.
            ("10.0.0.2", Some("1.2.3.4, 198.51.100.1"), "198.51.100.1"),
            ("10.0.0.2", Some("198.51.100.1, 10.0.0.7"), "198.51.100.1"),
            ("10.0.0.2", Some("10.9.9.9, 10.0.0.7"), "10.9.9.9"),
            ("10.0.0.2", Some("garbage, 10.0.0.7"), "10.0.0.7"),
            ("10.0.0.2", Some("198.51.100.1:4711"), "198.51.100.1"),
            ("::1", Some("2001:db8::5"), "2001:db8::5"),
        ];
        for (peer, forwarded, client) in cases {
            assert_eq!(
                client_ip(ip(peer), forwarded, &trusted),
                ip(client),
                "{peer} {forwarded:?}"
            );
        }
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("198.51.100.1"), &[]),
            ip("10.0.0.2")
        );
        // A dual-stack listener's view of an IPv4 proxy.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), Some("198.51.100.1"), &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn an_ipv6_client_is_throttled_by_its_64() {
        use super::throttle_key;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            throttle_key(ip("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            throttle_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "2001:db8:1:2::/64"
        );
        assert_ne!(throttle_key(ip("2001:db8:1:3::1")), "2001:db8:1:2::/64");
        assert_eq!(throttle_key(ip("198.51.100.7")), "198.51.100.7");
        assert_eq!(throttle_key(ip("::ffff:198.51.100.7")), "198.51.100.7");
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        assert!(is_local_path("/admin/devices?page=2"));
        assert!(!is_local_path("//evil.example"));
        assert!(!is_local_path("https://evil.example"));
        assert!(!is_local_path("/\\evil.example"));
        assert!(!is_local_path(""));
        assert!(!is_local_path("/"));
        assert!(!is_local_path("/\t/evil.example"));
        assert!(!is_local_path("/\n/evil.example"));
        assert!(!is_local_path("/devices\u{85}"));
        assert!(is_local_path("/devices/%2F%2Fx"));
    }
}
