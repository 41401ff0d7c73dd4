//! The monitor's `log` lines, queued until they travel to the shim as
//! `Log` actions with the next response: a monitor has no console of its
//! own.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use monitor_abi::{Action, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_TRACE, LOG_WARN};
use spin::Mutex;

/// Lines kept between two responses; a monitor that logs more loses the
/// oldest, and says how many.
const CAPACITY: usize = 32;

pub struct LogQueue {
    lines: Mutex<Queue>,
}

struct Queue {
    lines: VecDeque<(u8, String)>,
    dropped: u64,
}

impl Default for LogQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl LogQueue {
    pub const fn new() -> Self {
        Self { lines: Mutex::new(Queue { lines: VecDeque::new(), dropped: 0 }) }
    }

    pub fn push(&self, level: u8, mut text: String) {
        monitor_abi::fit_text(&mut text);
        let mut queue = self.lines.lock();
        if queue.lines.len() == CAPACITY {
            queue.lines.pop_front();
            queue.dropped += 1;
        }
        queue.lines.push_back((level, text));
    }

    /// At most `room` queued lines as actions, oldest first; a line about
    /// dropped ones comes first when there were any.
    pub fn take(&self, room: usize) -> Vec<Action> {
        let mut queue = self.lines.lock();
        let mut actions = Vec::new();
        if queue.dropped > 0 && room > 0 {
            let text = format!("{} monitor log lines were dropped", queue.dropped);
            actions.push(Action::Log { level: LOG_WARN, text });
            queue.dropped = 0;
        }
        while actions.len() < room {
            let Some((level, text)) = queue.lines.pop_front() else { break };
            actions.push(Action::Log { level, text });
        }
        actions
    }
}

pub fn level_code(level: log::Level) -> u8 {
    match level {
        log::Level::Error => LOG_ERROR,
        log::Level::Warn => LOG_WARN,
        log::Level::Info => LOG_INFO,
        log::Level::Debug => LOG_DEBUG,
        log::Level::Trace => LOG_TRACE,
    }
}

impl log::Log for LogQueue {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.push(level_code(record.level()), format!("{}", record.args()));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_abi::MAX_TEXT;

    #[test]
    fn lines_leave_in_order_and_overflow_is_reported() {
        let queue = LogQueue::new();
        for index in 0..CAPACITY + 3 {
            queue.push(LOG_INFO, format!("line {index}"));
        }
        let first = queue.take(4);
        assert_eq!(first[0], Action::Log { level: LOG_WARN, text: "3 monitor log lines were dropped".into() });
        assert_eq!(first[1], Action::Log { level: LOG_INFO, text: "line 3".into() });
        assert_eq!(first.len(), 4);
        let rest = queue.take(usize::MAX);
        assert_eq!(rest.len(), CAPACITY - 3);
        assert_eq!(rest.last(), Some(&Action::Log { level: LOG_INFO, text: format!("line {}", CAPACITY + 2) }));
        assert!(queue.take(8).is_empty());
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let queue = LogQueue::new();
        queue.push(LOG_ERROR, "é".repeat(MAX_TEXT));
        let Action::Log { text, .. } = &queue.take(1)[0] else { panic!("not a log action") };
        assert!(text.len() <= MAX_TEXT && text.len() >= MAX_TEXT - 1);
    }
}
