//! The browser's WebSocket to `/ws`: open while a user is signed in, fed into [`Live`], opened
//! again with backoff and jitter whenever it drops, for as long as the page lives. On the
//! server this is a no-op: the page's HTML already holds the state.

use super::state::{Live, Summary};
use crate::auth::Auth;

#[cfg(not(target_arch = "wasm32"))]
pub fn keep_connected(_live: Live, _auth: Auth, _summary: Summary) {}

#[cfg(target_arch = "wasm32")]
pub fn keep_connected(live: Live, auth: Auth, summary: Summary) {
    use leptos::prelude::*;
    Effect::new(move |_| {
        let signed_in = match auth.user.get() {
            Some(Ok(user)) => user.is_some(),
            _ => return,
        };
        match summary.0.get() {
            Some(Ok(Some(summary))) if signed_in => {
                live.adopt(&summary);
                start(live, auth);
            }
            Some(_) if !signed_in => browser::stop(live),
            _ => {}
        }
    });
}

/// In a split hydrate build the socket's code (connecting, backoff, decoding and applying every
/// event) is a chunk of its own, loaded once someone is signed in: the sign-in page never
/// fetches it. See `crate::pages`.
#[cfg(all(target_arch = "wasm32", feature = "hydrate"))]
fn start(live: Live, auth: Auth) {
    leptos::task::spawn_local(start_when_loaded(live, auth));
}

#[cfg(all(target_arch = "wasm32", feature = "hydrate"))]
#[leptos::lazy]
fn start_when_loaded(live: Live, auth: Auth) {
    use leptos::prelude::GetUntracked;
    // Signed out while the chunk was on its way: stay closed.
    if matches!(auth.user.get_untracked(), Some(Ok(Some(_)))) {
        browser::start(live, auth);
    }
}

#[cfg(all(target_arch = "wasm32", not(feature = "hydrate")))]
fn start(live: Live, auth: Auth) {
    browser::start(live, auth);
}

#[cfg(target_arch = "wasm32")]
mod browser {
    use std::cell::RefCell;
    use std::time::Duration;

    use leptos::prelude::*;
    use wasm_bindgen::{closure::Closure, JsCast};
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    use super::Live;
    use crate::auth::Auth;
    use crate::live::state::{now_ms, Connection};
    use crate::live::Frame;

    /// The server closes with this code when the login session ended.
    const SESSION_ENDED: u16 = 4001;
    /// With a heartbeat every 25 s, a minute of silence means the connection is dead.
    const SILENCE_MS: i64 = 60_000;

    #[derive(Default)]
    struct Socket {
        wanted: bool,
        ws: Option<WebSocket>,
        /// Failed attempts since the last good connection.
        attempt: u32,
        /// Whether this page was connected before (a reconnect reloads what readings it missed).
        was_connected: bool,
        generation: u64,
        last_frame_ms: i64,
        watchdog: bool,
        on_open: Option<Closure<dyn FnMut()>>,
        on_message: Option<Closure<dyn FnMut(MessageEvent)>>,
        on_close: Option<Closure<dyn FnMut(CloseEvent)>>,
    }

    thread_local! {
        static SOCKET: RefCell<Socket> = RefCell::new(Socket::default());
    }

    pub fn start(live: Live, auth: Auth) {
        if live.toasts_view.get_untracked().is_none() {
            live.toasts_view.set(Some(crate::live::state::toast_list));
        }
        let already = SOCKET.with_borrow_mut(|s| std::mem::replace(&mut s.wanted, true));
        if !already {
            connect(live, auth);
            watch(live, auth);
        }
    }

    pub fn stop(live: Live) {
        SOCKET.with_borrow_mut(|s| {
            s.wanted = false;
            s.generation += 1;
            if let Some(ws) = s.ws.take() {
                let _ = ws.close_with_code(1000);
            }
        });
        live.connection.set(Connection::Idle);
    }

    fn url(after: i64) -> Option<String> {
        let location = window().location();
        let scheme = if location.protocol().ok()? == "https:" {
            "wss:"
        } else {
            "ws:"
        };
        Some(format!(
            "{scheme}//{}/ws?after={after}",
            location.host().ok()?
        ))
    }

    fn connect(live: Live, auth: Auth) {
        let Some(url) = url(live.seq.get_untracked()) else {
            return;
        };
        let ws = match WebSocket::new(&url) {
            Ok(ws) => ws,
            Err(_) => return retry(live, auth),
        };
        let generation = SOCKET.with_borrow_mut(|s| {
            s.generation += 1;
            s.generation
        });
        let current = move || SOCKET.with_borrow(|s| s.generation == generation && s.wanted);

        let on_open = Closure::<dyn FnMut()>::new(move || {
            SOCKET.with_borrow_mut(|s| s.last_frame_ms = now_ms());
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if !current() {
                return;
            }
            let Some(text) = e.data().as_string() else {
                return;
            };
            let Ok(frame) = serde_json::from_slice::<Frame>(text.as_bytes()) else {
                leptos::logging::warn!("live: a frame that is not understood was ignored");
                return;
            };
            let hello = matches!(frame.event, crate::live::LiveEvent::Hello(_));
            live.apply(frame);
            let reconnected = SOCKET.with_borrow_mut(|s| {
                s.last_frame_ms = now_ms();
                if hello {
                    s.attempt = 0;
                    std::mem::replace(&mut s.was_connected, true)
                } else {
                    false
                }
            });
            if reconnected {
                // Readings are not replayed: load the devices' state again.
                live.devices_version.update(|v| *v += 1);
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            if !current() {
                return;
            }
            SOCKET.with_borrow_mut(|s| s.ws = None);
            if e.code() == SESSION_ENDED {
                signed_out(auth);
            } else {
                retry(live, auth);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        let first = SOCKET.with_borrow_mut(|s| {
            s.ws = Some(ws);
            s.on_open = Some(on_open);
            s.on_message = Some(on_message);
            s.on_close = Some(on_close);
            !s.was_connected && s.attempt == 0
        });
        live.connection.set(if first {
            Connection::Connecting
        } else {
            Connection::Reconnecting
        });
    }

    /// Tries again after an exponential, jittered delay: 0.5 s doubling up to 30 s.
    fn retry(live: Live, auth: Auth) {
        let attempt = SOCKET.with_borrow_mut(|s| {
            s.attempt += 1;
            s.attempt
        });
        live.connection.set(Connection::Reconnecting);
        let ceiling = (500.0 * 2f64.powi(attempt.min(16) as i32 - 1)).min(30_000.0);
        let delay = ceiling * (0.5 + 0.5 * js_sys::Math::random());
        set_timeout(
            move || {
                leptos::task::spawn_local(async move {
                    if !SOCKET.with_borrow(|s| s.wanted) {
                        return;
                    }
                    // A socket refused for want of a session looks like any other failure to
                    // the browser: ask.
                    match crate::auth::get_current_user().await {
                        Ok(None) => signed_out(auth),
                        _ => connect(live, auth),
                    }
                });
            },
            Duration::from_millis(delay as u64),
        );
    }

    /// Every 10 s: moves the page's clock ("3 min ago"), and closes a connection that has gone
    /// silent, which opens a new one.
    fn watch(live: Live, auth: Auth) {
        let first = SOCKET.with_borrow_mut(|s| !std::mem::replace(&mut s.watchdog, true));
        if !first {
            return;
        }
        let _ = set_interval_with_handle(
            move || {
                live.now.set(now_ms());
                let stale = SOCKET.with_borrow(|s| {
                    s.ws.clone()
                        .filter(|_| s.wanted && now_ms() - s.last_frame_ms > SILENCE_MS)
                });
                if let Some(ws) = stale {
                    let _ = ws.close_with_code_and_reason(4000, "no heartbeat");
                    SOCKET.with_borrow_mut(|s| {
                        s.ws = None;
                        s.generation += 1;
                    });
                    retry(live, auth);
                }
            },
            Duration::from_secs(10),
        );
    }

    /// The session is gone: ask who is signed in again. The page's gate then sends the
    /// visitor to the sign-in page (and back here after); a tab that signed out itself is
    /// there already.
    fn signed_out(auth: Auth) {
        SOCKET.with_borrow_mut(|s| s.wanted = false);
        auth.user.refetch();
    }
}
