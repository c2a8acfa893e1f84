//! A context lookup racing with the drop of an ancestor owner must not hang.
//!
//! During server rendering, a resource's future runs on one tokio worker and asks its owner for
//! a context (every server function does, for the database and the request), while the render
//! on another worker drops the owner's parent. reactive_graph 0.2.16's `with_context` held the
//! child's read lock while it let go of its temporary handle on the parent; when that handle was
//! the last one, the parent's drop cleaned up the child and waited for the child's write lock,
//! on the same thread, forever. A page then never finished and the worker thread was lost (seen
//! in CI: `/admin/accounts` sent its headers and never its body). The workspace patches
//! reactive_graph (`vendor/reactive_graph`); this test fails if the patch goes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use leptos::prelude::{provide_context, use_context, Owner};

#[derive(Clone)]
struct Marker(usize);

const ROUNDS: usize = 50_000;

#[test]
fn context_lookup_while_the_parent_owner_drops_does_not_hang() {
    let done = Arc::new(AtomicUsize::new(0));
    let (finished, wait) = mpsc::channel();
    let counter = Arc::clone(&done);
    std::thread::spawn(move || {
        let start = Arc::new(Barrier::new(2));
        let (to_dropper, dropper_rx) = mpsc::channel::<Owner>();
        let dropper_start = Arc::clone(&start);
        std::thread::spawn(move || {
            let mut round = 0u32;
            while let Ok(parent) = dropper_rx.recv() {
                dropper_start.wait();
                // Sweep the moment of the drop across the lookup.
                for _ in 0..(round % 64) * 8 {
                    std::hint::spin_loop();
                }
                round = round.wrapping_add(1);
                drop(parent);
            }
        });
        for round in 0..ROUNDS {
            let root = Owner::new();
            root.with(|| provide_context(Marker(round)));
            let parent = root.child();
            let child = parent.child();
            to_dropper.send(parent).expect("dropper thread alive");
            start.wait();
            let found = child.with(use_context::<Marker>).map(|m| m.0);
            // The parent may already be gone (then the chain to the root is cut): both answers
            // are fine, hanging is not.
            assert!(found.is_none() || found == Some(round));
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let _ = finished.send(());
    });
    if wait.recv_timeout(Duration::from_secs(60)).is_err() {
        panic!(
            "context lookups hung: {} of {ROUNDS} rounds finished in 60 s",
            done.load(Ordering::Relaxed)
        );
    }
}
