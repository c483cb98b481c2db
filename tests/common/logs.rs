//! Log capture for tests that run in parallel in one process.
//!
//! Invariant: one global subscriber, the [`Router`], is installed once per
//! test binary and nothing else ever installs a subscriber (global or
//! thread-local). It tells `tracing` every callsite is of `sometimes`
//! interest, so no callsite is ever cached as disabled: whichever test thread
//! reaches a callsite first, and whenever, every later event is offered to the
//! router, which hands it to the capture active on its thread (or to the
//! capture that owns the span it runs in, on another thread), or drops it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines written so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// Captures this thread's logs at `level` and above, spans included when
/// `spans`, until the guard drops. Spans opened here route their events to
/// this capture on any thread they are entered on.
pub fn capture(level: tracing::Level, spans: bool) -> (Captured, CaptureGuard) {
    let captured = Captured::default();
    let subscriber = format_into(&captured, spans).with_max_level(level).finish();
    (captured, activate(Dispatch::new(subscriber)))
}

/// What `tracing_subscriber::fmt().with_env_filter(filter)` prints on this
/// thread, without span events.
pub fn capture_filtered(filter: &str) -> (Captured, CaptureGuard) {
    let captured = Captured::default();
    let subscriber = format_into(&captured, false)
        .with_env_filter(filter)
        .finish();
    (captured, activate(Dispatch::new(subscriber)))
}

/// Plain-text log lines into `captured`, span events included when `spans`.
fn format_into(
    captured: &Captured,
    spans: bool,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    tracing_subscriber::filter::LevelFilter,
    impl for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
> {
    use tracing_subscriber::fmt::format::FmtSpan;
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_span_events(if spans { FmtSpan::FULL } else { FmtSpan::NONE })
        .with_writer(move || writer.clone())
}

/// Ends a capture when dropped: the thread's logs go back to the capture
/// active before it, if any.
#[must_use = "the capture ends when the guard drops"]
pub struct CaptureGuard(Arc<Capture>);

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            if let Some(at) = active.iter().rposition(|c| Arc::ptr_eq(c, &self.0)) {
                active.remove(at);
            }
        });
    }
}

/// One test's subscriber. Creating its `Dispatch` registered it with
/// `tracing`, so it is told of every callsite (it may answer `never`: the
/// router's `sometimes` outvotes it) and its `enabled` decides.
struct Capture {
    dispatch: Dispatch,
}

impl Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.dispatch.enabled(metadata)
    }

    /// Runs `f` on the capture's subscriber. A `tracing_subscriber` registry
    /// closes a span's parent through the default dispatcher (the router):
    /// while `f` runs, the router hands such calls back to this capture,
    /// which knows the id.
    fn forward<T>(self: &Arc<Self>, f: impl FnOnce(&Dispatch) -> T) -> T {
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                FORWARDING.with(|forwarding| forwarding.borrow_mut().pop());
            }
        }
        FORWARDING.with(|forwarding| forwarding.borrow_mut().push(self.clone()));
        let _pop = Pop;
        f(&self.dispatch)
    }
}

/// The capture whose subscriber is running on this thread, if any.
fn forwarding() -> Option<Arc<Capture>> {
    FORWARDING.with(|forwarding| forwarding.borrow().last().cloned())
}

thread_local! {
    /// The captures active on this thread, innermost last.
    static ACTIVE: RefCell<Vec<Arc<Capture>>> = const { RefCell::new(Vec::new()) };
    /// The captures whose subscriber is running on this thread, innermost last.
    static FORWARDING: RefCell<Vec<Arc<Capture>>> = const { RefCell::new(Vec::new()) };
    /// The router's spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// Installs the router (once), then makes `dispatch` this thread's capture.
fn activate(dispatch: Dispatch) -> CaptureGuard {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Router::default())
            .expect("no other global subscriber in a test binary");
    });
    // A callsite that finished registering while the router was being
    // installed may hold an interest computed without it: recompute them
    // all (every one is `sometimes` under the router, so this is idempotent).
    tracing::callsite::rebuild_interest_cache();
    let capture = Arc::new(Capture { dispatch });
    ACTIVE.with(|active| active.borrow_mut().push(capture.clone()));
    CaptureGuard(capture)
}

/// A span of the router: the capture that opened it, its id there, and how
/// many handles to it are open.
struct Span {
    capture: Arc<Capture>,
    inner: Id,
    refs: usize,
}

/// The global subscriber: forwards to the capture the calling thread is
/// logging to, or to the capture owning the span, and drops the rest.
#[derive(Default)]
struct Router {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, Span>>,
}

impl Router {
    /// The capture events on this thread go to: the thread's own, else the
    /// one owning the innermost entered span.
    fn current(&self) -> Option<Arc<Capture>> {
        if let Some(capture) = ACTIVE.with(|active| active.borrow().last().cloned()) {
            return Some(capture);
        }
        let entered = ENTERED.with(|entered| entered.borrow().clone());
        let spans = self.spans.lock().unwrap();
        entered
            .iter()
            .rev()
            .find_map(|id| spans.get(&id.into_u64()).map(|s| s.capture.clone()))
    }

    /// The capture owning span `id`, and the span's id there.
    fn span(&self, id: &Id) -> Option<(Arc<Capture>, Id)> {
        let spans = self.spans.lock().unwrap();
        spans
            .get(&id.into_u64())
            .map(|s| (s.capture.clone(), s.inner.clone()))
    }

    fn next_id(&self) -> Id {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        Id::from_non_zero_u64(NonZeroU64::new(n).unwrap())
    }
}

impl Subscriber for Router {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.current()
            .is_some_and(|capture| capture.enabled(metadata))
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next_id();
        let (capture, inner) = match attrs.parent().and_then(|p| self.span(p)) {
            // The capture's subscriber knows the parent by its own id.
            Some((capture, parent)) => {
                let attrs = Attributes::child_of(parent, attrs.metadata(), attrs.values());
                let inner = capture.forward(|s| s.new_span(&attrs));
                (capture, inner)
            }
            None if attrs.parent().is_some() => return id,
            None => match self.current() {
                Some(capture) => {
                    let inner = capture.forward(|s| s.new_span(attrs));
                    (capture, inner)
                }
                None => return id,
            },
        };
        let span = Span {
            capture,
            inner,
            refs: 1,
        };
        self.spans.lock().unwrap().insert(id.into_u64(), span);
        id
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((capture, inner)) = self.span(span) {
            capture.forward(|s| s.record(&inner, values));
        }
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        if let (Some((capture, inner)), Some((other, from))) = (self.span(span), self.span(follows))
        {
            if Arc::ptr_eq(&capture, &other) {
                capture.forward(|s| s.record_follows_from(&inner, &from));
            }
        }
    }

    /// Events with an explicit parent go to the parent's capture as they are
    /// (`tracing` offers no way to re-parent an event); the crate emits none.
    fn event(&self, event: &Event<'_>) {
        let parent = event.parent().and_then(|p| self.span(p)).map(|(c, _)| c);
        if let Some(capture) = parent.or_else(|| self.current()) {
            if capture.enabled(event.metadata()) {
                capture.forward(|s| s.event(event));
            }
        }
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.clone()));
        if let Some((capture, inner)) = self.span(span) {
            capture.forward(|s| s.enter(&inner));
        }
    }

    fn exit(&self, span: &Id) {
        if let Some((capture, inner)) = self.span(span) {
            capture.forward(|s| s.exit(&inner));
        }
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| id == span) {
                entered.remove(at);
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(capture) = forwarding() {
            return capture.dispatch.clone_span(span);
        }
        let cloned = {
            let mut spans = self.spans.lock().unwrap();
            spans.get_mut(&span.into_u64()).map(|s| {
                s.refs += 1;
                (s.capture.clone(), s.inner.clone())
            })
        };
        if let Some((capture, inner)) = cloned {
            capture.forward(|s| s.clone_span(&inner));
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        if let Some(capture) = forwarding() {
            return capture.dispatch.try_close(span);
        }
        let closing = {
            let mut spans = self.spans.lock().unwrap();
            let Some(s) = spans.get_mut(&span.into_u64()) else {
                return false;
            };
            s.refs = s.refs.saturating_sub(1);
            let closing = (s.capture.clone(), s.inner.clone(), s.refs == 0);
            if s.refs == 0 {
                spans.remove(&span.into_u64());
            }
            closing
        };
        // Outside the lock: closing logs the span's close event.
        let (capture, inner, last) = closing;
        capture.forward(|s| s.try_close(inner));
        last
    }

    fn current_span(&self) -> Current {
        let innermost = ENTERED.with(|entered| entered.borrow().last().cloned());
        let Some((id, capture)) =
            innermost.and_then(|id| self.span(&id).map(|(capture, _)| (id, capture)))
        else {
            return Current::none();
        };
        match capture.forward(|s| s.current_span()).into_inner() {
            Some((_, metadata)) => Current::new(id, metadata),
            None => Current::none(),
        }
    }
}
