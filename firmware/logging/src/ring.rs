//! The recent lines, bounded in count and in bytes.

use std::collections::VecDeque;
use std::sync::Arc;

pub(crate) struct Ring {
    lines: VecDeque<Arc<str>>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Ring {
    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> Ring {
        Ring {
            lines: VecDeque::new(),
            bytes: 0,
            max_lines: max_lines.max(1),
            max_bytes,
        }
    }

    /// Add a line, forgetting the oldest ones until both bounds hold again.
    pub(crate) fn push(&mut self, line: Arc<str>) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || (self.bytes > self.max_bytes && !self.lines.is_empty()) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn last(&self, n: usize) -> impl Iterator<Item = &Arc<str>> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bounds_hold() {
        let mut ring = Ring::new(3, 10);
        for line in ["aaaa", "bbbb", "cc", "d"] {
            ring.push(Arc::from(line));
        }
        let kept: Vec<&str> = ring.last(10).map(|l| &**l).collect();
        assert_eq!(kept, ["bbbb", "cc", "d"]);
        ring.push(Arc::from("eeeeeeee"));
        let kept: Vec<&str> = ring.last(10).map(|l| &**l).collect();
        assert_eq!(kept, ["d", "eeeeeeee"]);
        // A line bigger than the whole budget is not kept.
        ring.push(Arc::from("x".repeat(11).as_str()));
        assert_eq!(ring.last(10).count(), 0);
        assert_eq!(ring.bytes, 0);
        ring.push(Arc::from("f"));
        let kept: Vec<&str> = ring.last(1).map(|l| &**l).collect();
        assert_eq!(kept, ["f"]);
    }
}
