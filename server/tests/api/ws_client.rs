//! A dashboard WebSocket as a browser opens it (session cookie and Origin), reading frames with a
//! deadline and keeping every frame it saw.

use std::time::{Duration, Instant};

use app::live::{Frame, LiveEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// How long a handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(20);

pub struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every frame received but heartbeats, in order.
    pub seen: Vec<Frame>,
    /// The close code, once the server closed.
    pub closed: Option<u16>,
}

/// How a handshake went wrong: the HTTP status the server answered with.
#[derive(Debug)]
pub struct Refused(pub u16);

/// The origin a browser on `address` sends.
pub fn origin_of(address: &str) -> String {
    address.trim_end_matches('/').to_string()
}

/// Opens `/ws` on `address` (`http://host:port`) with the given cookie and Origin.
pub async fn connect(
    address: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    after: Option<i64>,
) -> Result<Socket, Refused> {
    crate::meter_support::step("opening a socket");
    let host = address.trim_start_matches("http://");
    let query = after.map(|a| format!("?after={a}")).unwrap_or_default();
    let mut request = format!("ws://{host}/ws{query}")
        .into_client_request()
        .expect("a request");
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().expect("a header"));
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("a header"));
    }
    let handshake = tokio::time::timeout(HANDSHAKE, tokio_tungstenite::connect_async(request));
    match handshake
        .await
        .unwrap_or_else(|_| panic!("no answer to the handshake within {HANDSHAKE:?}"))
    {
        Ok((stream, _)) => Ok(Socket {
            stream,
            seen: Vec::new(),
            closed: None,
        }),
        Err(tungstenite::Error::Http(response)) => Err(Refused(response.status().as_u16())),
        Err(e) => panic!("the handshake failed without an answer: {e}"),
    }
}

/// Opens `/ws` signed in with `cookie` from the site's own origin, as the last event the page
/// has was `after`; reads nothing yet.
pub async fn reconnect(address: &str, cookie: &str, after: Option<i64>) -> Socket {
    connect(address, Some(cookie), Some(&origin_of(address)), after)
        .await
        .expect("the socket opens")
}

/// Opens `/ws` signed in with `cookie` from the site's own origin, and reads its hello.
pub async fn open(address: &str, cookie: &str, after: Option<i64>) -> Socket {
    let mut socket = connect(address, Some(cookie), Some(&origin_of(address)), after)
        .await
        .expect("the socket opens");
    socket
        .until(Duration::from_secs(10), "hello", |f| {
            matches!(f.event, LiveEvent::Hello(_))
        })
        .await;
    socket
}

/// Like [`open`], over a connection whose receive window is tiny: when the test does not read,
/// the server soon cannot send either.
pub async fn open_with_small_window(address: &str, cookie: &str) -> Socket {
    let host = address.trim_start_matches("http://");
    let tcp = tokio::net::TcpSocket::new_v4().expect("a socket");
    tcp.set_recv_buffer_size(2048).expect("a small buffer");
    let stream = tokio::time::timeout(HANDSHAKE, tcp.connect(host.parse().expect("an address")))
        .await
        .expect("connects in time")
        .expect("connects");
    let mut request = format!("ws://{host}/ws")
        .into_client_request()
        .expect("a request");
    request
        .headers_mut()
        .insert("cookie", cookie.parse().expect("a header"));
    request
        .headers_mut()
        .insert("origin", origin_of(address).parse().expect("a header"));
    let handshake = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream));
    let (stream, _) = tokio::time::timeout(HANDSHAKE, handshake)
        .await
        .expect("an answer to the handshake in time")
        .expect("the socket opens");
    let mut socket = Socket {
        stream,
        seen: Vec::new(),
        closed: None,
    };
    socket
        .until(Duration::from_secs(10), "hello", |f| {
            matches!(f.event, LiveEvent::Hello(_))
        })
        .await;
    socket
}

impl Socket {
    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(HANDSHAKE, self.stream.send(Message::Text(text.into())))
            .await
            .expect("sent in time")
            .expect("sent");
    }

    /// The next frame that is not a heartbeat, or `None` when the socket closed.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Frame>, ()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return Err(()),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Text(text) => {
                    let frame: Frame = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("a frame that is not understood: {e}: {text}"));
                    if frame.event == LiveEvent::Heartbeat {
                        continue;
                    }
                    self.seen.push(frame.clone());
                    return Ok(Some(frame));
                }
                Message::Close(frame) => {
                    self.closed = Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                    return Ok(None);
                }
                _ => continue,
            }
        }
    }

    /// Reads until a frame matches `what`; fails after `within`, listing what it saw.
    pub async fn until(
        &mut self,
        within: Duration,
        what: &str,
        matches: impl Fn(&Frame) -> bool,
    ) -> Frame {
        crate::meter_support::step(&format!("reading until {what}"));
        let deadline = Instant::now() + within;
        loop {
            match self.next(deadline).await {
                Ok(Some(frame)) if matches(&frame) => return frame,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "closed ({:?}) before {what}; saw {} frames: {:?}",
                    self.closed,
                    self.seen.len(),
                    self.kinds()
                ),
                Err(()) => panic!(
                    "no {what} within {within:?}; saw {} frames: {:?}",
                    self.seen.len(),
                    self.kinds()
                ),
            }
        }
    }

    /// Reads (and so answers pings) for a while, whatever comes.
    pub async fn pump(&mut self, during: Duration) {
        let deadline = Instant::now() + during;
        while let Ok(Some(_)) = self.next(deadline).await {}
    }

    /// Reads until the server closes the socket; its close code. Fails after `within`.
    pub async fn until_closed(&mut self, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            match self.next(deadline).await {
                Ok(Some(_)) => {}
                Ok(None) => return self.closed.unwrap_or(1006),
                Err(()) => panic!(
                    "still open after {within:?}; saw {} frames: {:?}",
                    self.seen.len(),
                    self.kinds()
                ),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(HANDSHAKE, self.stream.close(None)).await;
    }

    /// The kinds of the frames seen, for failure messages.
    pub fn kinds(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|f| format!("{}#{}", f.event.kind(), f.seq))
            .collect()
    }

    /// The ids of the alerts seen, in order, repeats included.
    pub fn alert_ids(&self) -> Vec<Uuid> {
        self.seen
            .iter()
            .filter_map(|f| match &f.event {
                LiveEvent::Alert(a) => Some(a.id),
                _ => None,
            })
            .collect()
    }

    /// The devices whose readings were seen.
    pub fn reading_devices(&self) -> Vec<Uuid> {
        self.seen
            .iter()
            .flat_map(|f| match &f.event {
                LiveEvent::Readings(r) => r.iter().map(|r| r.device_id).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The last outbox number seen (the `after` of a reconnect).
    pub fn position(&self) -> i64 {
        self.seen
            .iter()
            .map(|f| match f.event {
                LiveEvent::Hello(seq) => seq.max(f.seq),
                _ => f.seq,
            })
            .max()
            .unwrap_or(0)
    }
}

/// Whether a frame is the given device's `device_changed` event (a marker: every event numbered
/// before it has been delivered when it arrives).
pub fn changed(device: Uuid) -> impl Fn(&Frame) -> bool {
    move |f| matches!(&f.event, LiveEvent::DeviceChanged(d) if d.device_id == device)
}
