//! Subscribers to new lines (`syslog follow`). Each has a bounded queue; logging only ever
//! `try_send`s into it, so a reader that stalls costs it lines, never the logger time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Duration;

struct Slot {
    sender: SyncSender<Arc<str>>,
    /// Lines lost since the follower last had room; reported before its next line.
    dropped: u64,
}

#[derive(Default)]
pub(crate) struct Followers {
    slots: Vec<Slot>,
}

impl Followers {
    pub(crate) fn subscribe(&mut self, backlog: VecDeque<Arc<str>>, queue: usize) -> Follower {
        let (sender, receiver) = sync_channel(queue);
        self.slots.push(Slot { sender, dropped: 0 });
        Follower { backlog, receiver }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Offer `line` to every follower; forget the ones that went away.
    pub(crate) fn send(&mut self, line: &Arc<str>) {
        self.slots.retain_mut(|slot| {
            if slot.dropped > 0 {
                let notice = format!(
                    "-- {} line{} dropped: this follower did not keep up --",
                    slot.dropped,
                    if slot.dropped == 1 { "" } else { "s" }
                );
                match slot.sender.try_send(Arc::from(notice)) {
                    Ok(()) => slot.dropped = 0,
                    Err(TrySendError::Full(_)) => {
                        slot.dropped += 1;
                        return true;
                    }
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            match slot.sender.try_send(Arc::clone(line)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    slot.dropped += 1;
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
}

/// What [`Follower::recv_timeout`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowEvent {
    Line(String),
    /// Nothing new within the timeout; ask again.
    Timeout,
    /// The logger is gone; nothing more will come.
    Closed,
}

/// New log lines as they are written, after the history asked for. Dropping it unsubscribes.
pub struct Follower {
    backlog: VecDeque<Arc<str>>,
    receiver: Receiver<Arc<str>>,
}

impl Follower {
    /// The next line, waiting at most `timeout` for one.
    pub fn recv_timeout(&mut self, timeout: Duration) -> FollowEvent {
        if let Some(line) = self.backlog.pop_front() {
            return FollowEvent::Line(line.to_string());
        }
        match self.receiver.recv_timeout(timeout) {
            Ok(line) => FollowEvent::Line(line.to_string()),
            Err(RecvTimeoutError::Timeout) => FollowEvent::Timeout,
            Err(RecvTimeoutError::Disconnected) => FollowEvent::Closed,
        }
    }

    /// The next line if one is waiting.
    pub fn try_recv(&mut self) -> Option<String> {
        if let Some(line) = self.backlog.pop_front() {
            return Some(line.to_string());
        }
        match self.receiver.try_recv() {
            Ok(line) => Some(line.to_string()),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }
}
