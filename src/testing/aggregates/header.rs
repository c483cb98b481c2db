//! The `cqrs_es` headers every test aggregate repeats, written once:
//! [`command_aggregate!`](crate::command_aggregate) (an aggregate with a
//! command of its own) and [`domain_event!`](crate::domain_event) (an
//! event enum named by its variants).
//!
//! **Invariant:** the macros write only the trait's header; what a command
//! does and how an event changes the state stay with the aggregate.

/// Implements [`cqrs_es::Aggregate`] for a test aggregate with a command of
/// its own (`Services = ()`): the header is written here, `handle`'s and
/// `apply`'s bodies are the caller's.
///
/// ```
/// use cqrs_es::{Aggregate, DomainEvent};
///
/// #[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Counter(u64);
///
/// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// enum Counted {
///     Added { by: u64 },
/// }
/// dynamo_es::domain_event!(Counted, "1.0", Added);
///
/// dynamo_es::command_aggregate!(Counter, "Counter", u64, Counted, std::io::Error,
///     handle(self, by, sink) {
///         sink.write(Counted::Added { by }, self).await;
///         Ok(())
///     }
///     apply(self, event) {
///         let Counted::Added { by } = event;
///         self.0 += by;
///     }
/// );
///
/// let mut counter = Counter::default();
/// counter.apply(Counted::Added { by: 2 });
/// assert_eq!((counter, Counted::Added { by: 1 }.event_type()), (Counter(2), "Added".to_string()));
/// ```
#[macro_export]
macro_rules! command_aggregate {
    (
        $state:ty, $type:literal, $command:ty, $event:ty, $error:ty,
        handle($handle_self:ident, $cmd:pat, $sink:ident) $handle:block
        apply($apply_self:ident, $ev:pat) $apply:block
    ) => {
        impl ::cqrs_es::Aggregate for $state {
            const TYPE: &'static str = $type;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut $handle_self,
                $cmd: $command,
                _: &(),
                $sink: &::cqrs_es::event_sink::EventSink<Self>,
            ) -> ::std::result::Result<(), $error> $handle

            fn apply(&mut $apply_self, $ev: $event) $apply
        }
    };
}

/// Implements [`cqrs_es::DomainEvent`] for the enum `$event`: each
/// variant's event type is its name, every event's version `$version`.
/// See [`command_aggregate!`](crate::command_aggregate) for an example.
#[macro_export]
macro_rules! domain_event {
    ($event:ident, $version:literal, $($variant:ident),+ $(,)?) => {
        impl ::cqrs_es::DomainEvent for $event {
            fn event_type(&self) -> ::std::string::String {
                match self {
                    $($event::$variant { .. } => stringify!($variant),)+
                }
                .to_string()
            }

            fn event_version(&self) -> ::std::string::String {
                $version.to_string()
            }
        }
    };
}
