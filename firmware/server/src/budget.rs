//! Byte budgets for stanzas waiting to be written (issue 13): one per queue (a client
//! session, a Call Bridge, an s2s link) and one for the whole daemon.
//!
//! Counting stanzas is not enough: 256 queued stanzas of 256 KiB each are 64 MiB for one
//! client that stopped reading. A queue is charged when a stanza is queued and released when
//! its bytes have been written to the socket, so what sits in a write buffer still counts.
//! Every charge to a queue is also a charge to the daemon's [`MemoryBudget`]; a queue that is
//! dropped gives back whatever it still holds.
//!
//! The sizes are estimates of the heap a queued item occupies (element structs, names,
//! attributes, text), not of its serialized form: what we bound is memory.

use crate::router::{Outbound, SessionControl};
use sb_proto::{Element, Node, StreamError, StreamErrorCondition};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why a charge was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Overdrawn {
    /// This queue holds its budget already: its reader is too slow.
    #[error("the recipient's queue is over its byte budget")]
    Queue,
    /// The daemon as a whole holds its budget of queued bytes.
    #[error("the server's budget for queued stanzas is used up")]
    Memory,
}

/// Bytes queued across the daemon, against one limit.
pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Take `bytes` if they fit. A single item larger than the whole budget never fits.
    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.limit).then_some(after)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            Some(used.saturating_sub(bytes))
        });
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The bytes one queue may hold, charged against the daemon's budget too.
pub struct QueueBudget {
    used: AtomicUsize,
    limit: usize,
    global: Option<Arc<MemoryBudget>>,
}

impl Default for QueueBudget {
    /// No limit and no daemon budget (tests that build sessions by hand).
    fn default() -> Self {
        QueueBudget {
            used: AtomicUsize::new(0),
            limit: usize::MAX,
            global: None,
        }
    }
}

impl QueueBudget {
    pub fn new(limit: usize, global: Arc<MemoryBudget>) -> Self {
        QueueBudget {
            used: AtomicUsize::new(0),
            limit,
            global: Some(global),
        }
    }

    /// Charge `bytes` for an item about to be queued. An empty queue always takes one item
    /// (up to the stanza size limit) when the daemon has room, so a budget smaller than a
    /// stanza never makes a reading peer unreachable.
    pub fn charge(&self, bytes: usize) -> Result<(), Overdrawn> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(bytes)?;
                (used == 0 || after <= self.limit).then_some(after)
            })
            .map_err(|_| Overdrawn::Queue)?;
        if let Some(global) = &self.global
            && !global.try_take(bytes)
        {
            self.release_local(bytes);
            return Err(Overdrawn::Memory);
        }
        Ok(())
    }

    /// The item's bytes were written (or the item was dropped).
    pub fn release(&self, bytes: usize) {
        let released = self.release_local(bytes);
        if let Some(global) = &self.global {
            global.give_back(released);
        }
    }

    /// Lower the local count by at most what it holds; returns how much it went down, so
    /// the daemon is never credited more than this queue was charged.
    fn release_local(&self, bytes: usize) -> usize {
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            })
            .unwrap_or(0);
        before.min(bytes)
    }

    /// Bytes charged now.
    pub fn queued(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Drop for QueueBudget {
    /// Items still queued when the queue goes away are freed with it.
    fn drop(&mut self) {
        if let Some(global) = &self.global {
            global.give_back(*self.used.get_mut());
        }
    }
}

/// A stanza for this session was refused because of `over`: end the session, since a
/// reader that does not keep up would otherwise hold its budget for good and have every
/// later stanza bounced. What is still queued for it goes back to routing when it ends
/// (offline storage or a bounce), never lost.
///
/// Its own budget exceeded is `<policy-violation/>`: the peer broke this server's rule that
/// a stream must read what is sent to it (RFC 6120 §4.9.3.14, "violated some local service
/// policy"). The daemon's budget exhausted is `<resource-constraint/>` (§4.9.3.16, "lacks
/// the system resources necessary to service the stream"); it ends only sessions that
/// hold queued bytes, not one that was merely the next recipient.
pub fn close_slow_reader(control: &SessionControl, over: Overdrawn) {
    let queued = control.budget().queued();
    let error = match over {
        Overdrawn::Queue => StreamError::with_text(
            StreamErrorCondition::PolicyViolation,
            format!("not reading: {queued} bytes are waiting for this stream"),
        ),
        Overdrawn::Memory if queued > 0 => StreamError::with_text(
            StreamErrorCondition::ResourceConstraint,
            "the server is out of room for queued stanzas",
        ),
        Overdrawn::Memory => return,
    };
    control.request_close(error);
}

/// Whether a stream is being closed by [`close_slow_reader`] (or for a like reason): its
/// goodbye is not worth waiting the full write timeout for.
pub fn ends_slow_reader(error: &StreamError) -> bool {
    matches!(
        error.condition,
        StreamErrorCondition::PolicyViolation | StreamErrorCondition::ResourceConstraint
    )
}

/// Estimated heap bytes of a queued item.
pub fn outbound_bytes(item: &Outbound) -> usize {
    match item {
        Outbound::Stanza(stanza) => element_bytes(stanza),
        Outbound::Raw(bytes) => bytes.len() + std::mem::size_of::<Outbound>(),
    }
}

/// Estimated heap bytes of an element tree: each element's struct, name, attributes and
/// text. Namespaces are shared between elements and not counted per element. Iterative, so
/// a deep tree cannot exhaust the stack.
pub fn element_bytes(root: &Element) -> usize {
    const ATTR: usize = std::mem::size_of::<(String, String)>();
    const NODE: usize = std::mem::size_of::<Node>();
    let mut total = 0usize;
    let mut stack = vec![root];
    while let Some(element) = stack.pop() {
        total = total
            .saturating_add(std::mem::size_of::<Element>())
            .saturating_add(element.name.len())
            .saturating_add(element.children.len() * NODE);
        for (name, value) in &element.attrs {
            total = total.saturating_add(ATTR + name.len() + value.len());
        }
        for child in &element.children {
            match child {
                Node::Element(child) => stack.push(child),
                Node::Text(text) => total = total.saturating_add(text.len()),
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::ns;

    #[test]
    fn a_queue_is_bounded_by_its_budget_and_the_daemons() {
        let global = Arc::new(MemoryBudget::new(1000));
        let a = QueueBudget::new(600, Arc::clone(&global));
        let b = QueueBudget::new(600, Arc::clone(&global));
        assert_eq!(a.charge(500), Ok(()));
        assert_eq!(a.charge(200), Err(Overdrawn::Queue));
        assert_eq!(b.charge(400), Ok(()));
        assert_eq!(b.charge(150), Err(Overdrawn::Memory));
        // A refused charge leaves nothing behind.
        assert_eq!(b.queued(), 400);
        assert_eq!(global.used(), 900);
        a.release(500);
        assert_eq!(global.used(), 400);
        assert_eq!(b.charge(150), Ok(()));
        drop(b);
        assert_eq!(global.used(), 0);
    }

    #[test]
    fn an_empty_queue_takes_one_item_larger_than_its_budget() {
        let global = Arc::new(MemoryBudget::new(10_000));
        let queue = QueueBudget::new(100, Arc::clone(&global));
        assert_eq!(queue.charge(5000), Ok(()));
        assert_eq!(queue.charge(1), Err(Overdrawn::Queue));
        queue.release(5000);
        assert_eq!(queue.charge(1), Ok(()));
        // Never more than the daemon allows, though.
        assert_eq!(QueueBudget::new(100, global).charge(20_000), Err(Overdrawn::Memory));
    }

    #[test]
    fn releasing_more_than_was_charged_does_not_credit_the_daemon() {
        let global = Arc::new(MemoryBudget::new(1000));
        let a = QueueBudget::new(1000, Arc::clone(&global));
        let b = QueueBudget::new(1000, Arc::clone(&global));
        a.charge(100).unwrap();
        b.charge(100).unwrap();
        a.release(500);
        assert_eq!(global.used(), 100);
    }

    #[test]
    fn element_size_grows_with_text_attributes_and_children() {
        let small = Element::new("message", ns::CLIENT);
        let big = Element::new("message", ns::CLIENT)
            .with_attr("to", "juliet@example.com")
            .with_child(Element::new("body", ns::CLIENT).with_text("x".repeat(10_000)));
        assert!(element_bytes(&small) < 200);
        assert!(element_bytes(&big) > 10_000);
        assert!(outbound_bytes(&Outbound::Raw(vec![0; 4096].into_boxed_slice())) > 4096);
    }
}
