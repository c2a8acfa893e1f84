//! How resources travel from the server's HTML to the browser.

use std::future::Future;

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::{de::DeserializeOwned, Serialize};

/// JSON, read in the browser with the same `serde_json` reader (from bytes) that decodes the
/// server functions' responses.
///
/// Leptos's default resource codec reads from a `&str`, the server functions from a byte
/// slice: every type both carry had its whole deserializer twice in the wasm (a
/// `serde_json::Deserializer` per reader). One reader halves that, in the first module and in
/// every page's chunk.
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(text.as_bytes())
    }
}

/// A resource with the [`Json`] codec; otherwise `Resource::new`.
///
/// On the server the fetcher's future is boxed as soon as it is made. A server function's
/// future there is the whole call (session, cache, a database query's state: kilobytes), and
/// `Resource` moves the future it is given by value through several wrappers before it boxes
/// it; those copies were nearly a third of the instructions of an anonymous page (callgrind,
/// 200 requests of `/login`). Boxed first, each move copies a pointer. The browser's
/// futures are small fetches, so the wasm keeps them unboxed.
#[track_caller]
pub fn resource<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T, Json>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Send + Sync + Clone + PartialEq + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    #[cfg(feature = "ssr")]
    let fetcher = move |source| -> std::pin::Pin<Box<dyn Future<Output = T> + Send>> {
        Box::pin(fetcher(source))
    };
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        value: Option<f64>,
    }

    #[test]
    fn what_the_server_encodes_the_browser_decodes() {
        let sample = Sample {
            name: "Küche \"A\" ⚡".into(),
            value: Some(-1.5),
        };
        let text = <Json as Encoder<Sample>>::encode(&sample).unwrap();
        assert_eq!(text, r#"{"name":"Küche \"A\" ⚡","value":-1.5}"#);
        assert_eq!(<Json as Decoder<Sample>>::decode(&text).unwrap(), sample);
        assert!(<Json as Decoder<Sample>>::decode(r#"{"name":1}"#).is_err());
    }
}
