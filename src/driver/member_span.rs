//! The member's log span: `member{group, client_id, member_id, generation}`, with a child span
//! per task (`group_driver`, `consumer`, `fetcher`), so a line from one of many members of one
//! process says whose it is and in which generation.
//!
//! A span's fields are fixed once a subscriber has formatted them (recording again appends to
//! them in `tracing-subscriber`'s text format), so the driver makes a new member span whenever
//! the member id or the generation changes, and each task enters the member span of the moment
//! every time it runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// Which task a child span names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskRole {
    /// The group driver: membership requests and events.
    Driver,
    /// The consumer's task: the session and the application's requests.
    Consumer,
    /// The fetcher.
    Fetcher,
}

/// The member's current log span; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemberSpan(watch::Receiver<tracing::Span>);

/// Makes the member's spans as its identity changes (held by the driver).
#[derive(Debug)]
pub(crate) struct MemberSpanWriter {
    group: String,
    client_id: String,
    current: (String, Option<i32>),
    sender: watch::Sender<tracing::Span>,
}

impl MemberSpanWriter {
    /// The span of a member that has not joined yet, and its writer.
    pub(crate) fn new(group: &str, client_id: &str) -> (MemberSpanWriter, MemberSpan) {
        let span = member_span(group, client_id, "", None);
        let (sender, receiver) = watch::channel(span);
        let writer = MemberSpanWriter {
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            current: (String::new(), None),
            sender,
        };
        (writer, MemberSpan(receiver))
    }

    /// Makes a new member span if the member id or the generation changed.
    pub(crate) fn update(&mut self, member_id: &str, generation: Option<i32>) {
        if self.current.0 != member_id || self.current.1 != generation {
            self.current = (member_id.to_owned(), generation);
            self.sender.send_replace(member_span(&self.group, &self.client_id, member_id, generation));
        }
    }
}

fn member_span(group: &str, client_id: &str, member_id: &str, generation: Option<i32>) -> tracing::Span {
    match generation {
        Some(generation) => {
            tracing::info_span!(parent: None, "member", group = %group, client_id = %client_id, member_id = %member_id, generation)
        }
        None => {
            tracing::info_span!(parent: None, "member", group = %group, client_id = %client_id, member_id = %member_id)
        }
    }
}

impl MemberSpan {
    /// A span that never changes (a fetcher running outside a group member).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn fixed(span: tracing::Span) -> MemberSpan {
        MemberSpan(watch::channel(span).1)
    }

    /// The member's span now.
    pub fn current(&self) -> tracing::Span {
        self.0.borrow().clone()
    }

    /// `future`, run inside the `role` child of the member span of the moment, on every poll.
    pub(crate) fn follow<F: Future>(&self, role: TaskRole, future: F) -> FollowSpan<F> {
        FollowSpan { future: Box::pin(future), member: self.clone(), role, child: None }
    }
}

/// A future that enters its task's span, under the current member span, whenever it is polled.
pub(crate) struct FollowSpan<F> {
    future: Pin<Box<F>>,
    member: MemberSpan,
    role: TaskRole,
    /// The child span, with the member span it was made under.
    child: Option<(Option<tracing::Id>, tracing::Span)>,
}

impl<F: Future> Future for FollowSpan<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let member = this.member.current();
        let id = member.id();
        let child = match &this.child {
            Some((made_under, child)) if *made_under == id => child.clone(),
            _ => {
                let child = match this.role {
                    TaskRole::Driver => tracing::info_span!(parent: &member, "group_driver"),
                    TaskRole::Consumer => tracing::info_span!(parent: &member, "consumer"),
                    TaskRole::Fetcher => tracing::info_span!(parent: &member, "fetcher"),
                };
                this.child = Some((id, child.clone()));
                child
            }
        };
        let _entered = child.enter();
        this.future.as_mut().poll(cx)
    }
}
