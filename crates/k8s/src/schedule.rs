//! Daily backup windows and the staggered start times of the CronJobs inside them.

use crate::K8sError;

/// A daily window such as `03:00-04:00`: start (minutes after midnight) and length in
/// minutes. The end is exclusive, and a window may cross midnight (`23:30-00:30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u16,
    len: u16,
}

fn bad_window(s: &str) -> K8sError {
    K8sError::Invalid {
        what: "window".into(),
        value: s.into(),
        rule: "HH:MM-HH:MM with a start different from the end, e.g. 03:00-04:00".into(),
    }
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl Window {
    /// Parses `HH:MM-HH:MM` (`24:00` is not accepted; write `00:00`).
    pub fn parse(s: &str) -> Result<Self, K8sError> {
        let (a, b) = s.split_once('-').ok_or_else(|| bad_window(s))?;
        let start = parse_clock(a).ok_or_else(|| bad_window(s))?;
        let end = parse_clock(b).ok_or_else(|| bad_window(s))?;
        let len = (end + 1440 - start) % 1440;
        if len == 0 {
            return Err(bad_window(s));
        }
        Ok(Window { start, len })
    }

    /// Length in minutes.
    pub fn minutes(&self) -> u16 {
        self.len
    }

    /// Start times (hour, minute) for `n` jobs, spread evenly over the window: job `i`
    /// starts `floor(i * len / n)` minutes after the start. With at most one job per minute
    /// of the window all start minutes are distinct; with more jobs, some share a minute.
    pub fn stagger(&self, n: usize) -> Vec<(u8, u8)> {
        (0..n)
            .map(|i| {
                let offset = (i as u64 * u64::from(self.len) / n as u64) as u16;
                let t = (self.start + offset) % 1440;
                ((t / 60) as u8, (t % 60) as u8)
            })
            .collect()
    }
}

/// A daily cron expression `M H * * *`.
pub fn daily_cron(hour: u8, minute: u8) -> String {
    format!("{minute} {hour} * * *")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_windows() {
        assert_eq!(Window::parse("03:00-04:00").unwrap().minutes(), 60);
        assert_eq!(Window::parse("3:30-4:00").unwrap().minutes(), 30);
        assert_eq!(Window::parse("23:30-00:30").unwrap().minutes(), 60);
        for bad in [
            "",
            "03:00",
            "03:00-03:00",
            "25:00-26:00",
            "03:60-04:00",
            "3-4",
            "03:00-04:0",
            "24:00-01:00",
            "a:bc-04:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stagger_is_even_distinct_and_inside() {
        let w = Window::parse("03:00-04:00").unwrap();
        assert_eq!(w.stagger(1), vec![(3, 0)]);
        assert_eq!(w.stagger(3), vec![(3, 0), (3, 20), (3, 40)]);
        let sixty = w.stagger(60);
        let mut mins: Vec<u8> = sixty
            .iter()
            .map(|&(h, m)| {
                assert_eq!(h, 3);
                m
            })
            .collect();
        mins.dedup();
        assert_eq!(mins.len(), 60);
        // More jobs than minutes: still inside the window, at most two per minute.
        let many = w.stagger(120);
        assert!(many.iter().all(|&(h, _)| h == 3));
        for m in 0..60u8 {
            assert_eq!(many.iter().filter(|&&(_, x)| x == m).count(), 2);
        }
    }

    #[test]
    fn stagger_across_midnight() {
        let w = Window::parse("23:30-00:30").unwrap();
        assert_eq!(w.stagger(4), vec![(23, 30), (23, 45), (0, 0), (0, 15)]);
        assert_eq!(daily_cron(0, 15), "15 0 * * *");
    }
}
