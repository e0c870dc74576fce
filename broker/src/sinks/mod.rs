//! Consumers of the change stream, one per file. Each takes a
//! [`Subscription`](crate::stream::Subscription) and runs on its own (a thread or a task):
//! none can slow the broker down. The HTTP API's WebSocket is one too (in the `web` crate).

pub mod feed;
