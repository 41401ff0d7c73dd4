//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use crate::api::ControlCounters;
use crate::auth::AuthCounters;
use crate::model::{GuestState, GuestStats, GuestSummary, HostInfo};

/// Label values may hold any text; these three characters are the format's escapes.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Host and control-server families are given only for the admin (`host` is `Some`): they
/// describe everyone's activity.
pub fn render(
    guests: &[(GuestSummary, Option<GuestStats>)],
    host: Option<&(HostInfo, ControlCounters, AuthCounters)>,
) -> String {
    let mut out = Exposition { text: String::new() };

    out.family("matryoshka_guest_state", "gauge", "1 for the state the guest is in, 0 for the others.");
    for (guest, _) in guests {
        for state in GuestState::ALL {
            out.sample(
                "matryoshka_guest_state",
                &[("guest", &guest.name), ("state", state.as_str())],
                u64::from(guest.state == state),
            );
        }
    }
    out.family("matryoshka_guest_memory_bytes", "gauge", "Memory given to the guest.");
    for (guest, _) in guests {
        out.sample(
            "matryoshka_guest_memory_bytes",
            &[("guest", &guest.name)],
            guest.memory_mib.saturating_mul(1 << 20),
        );
    }
    out.family("matryoshka_guest_vcpus", "gauge", "Virtual CPUs of the guest.");
    for (guest, _) in guests {
        out.sample("matryoshka_guest_vcpus", &[("guest", &guest.name)], u64::from(guest.vcpus));
    }
    out.family("matryoshka_guest_exits_total", "counter", "VM exits of the guest, by basic exit reason and by level.");
    for (guest, stats) in guests {
        for exit in stats.iter().flat_map(|s| &s.exits) {
            for (level, count) in [("l1", exit.l1), ("l2", exit.l2)] {
                out.sample(
                    "matryoshka_guest_exits_total",
                    &[("guest", &guest.name), ("reason", &exit.reason), ("level", level)],
                    count,
                );
            }
        }
    }
    out.family("matryoshka_guest_monitor_memory_bytes", "gauge", "Memory held by the guest's monitor.");
    for (guest, stats) in guests {
        if let Some(stats) = stats {
            out.sample("matryoshka_guest_monitor_memory_bytes", &[("guest", &guest.name)], stats.monitor_memory_bytes);
        }
    }
    out.family(
        "matryoshka_guest_ept02_pages",
        "gauge",
        "Pages of the shadow EPT tables (EPT02) built for the guest's L2s.",
    );
    for (guest, stats) in guests {
        if let Some(stats) = stats {
            out.sample("matryoshka_guest_ept02_pages", &[("guest", &guest.name)], stats.ept02_pages);
        }
    }
    out.family("matryoshka_guest_uptime_seconds", "gauge", "Time since the guest was last started.");
    for (guest, stats) in guests {
        if let Some(stats) = stats {
            out.sample("matryoshka_guest_uptime_seconds", &[("guest", &guest.name)], stats.uptime_ms / 1000);
        }
    }

    if let Some((host, control, auth)) = host {
        out.family("matryoshka_host_memory_free_bytes", "gauge", "Memory not given to the shim, guests or monitors.");
        out.sample("matryoshka_host_memory_free_bytes", &[], host.free_memory_bytes);
        out.family("matryoshka_host_memory_total_bytes", "gauge", "Memory of the machine.");
        out.sample("matryoshka_host_memory_total_bytes", &[], host.total_memory_bytes);
        out.family("matryoshka_host_uptime_seconds", "gauge", "Time since the shim booted.");
        out.sample("matryoshka_host_uptime_seconds", &[], host.uptime_ms / 1000);
        out.family("matryoshka_control_responses_total", "counter", "Control API responses, by status class.");
        for (class, count) in control.responses.iter().enumerate().skip(1) {
            out.sample("matryoshka_control_responses_total", &[("class", &format!("{class}xx"))], *count);
        }
        out.family("matryoshka_control_connections_total", "counter", "Control connections, by how they were handled.");
        for (outcome, count) in [
            ("accepted", control.connections_accepted),
            ("refused", control.connections_refused),
            ("timed_out", control.connections_timed_out),
        ] {
            out.sample("matryoshka_control_connections_total", &[("outcome", outcome)], count);
        }
        out.family(
            "matryoshka_control_auth_failures_total",
            "counter",
            "Requests refused for a missing or wrong token.",
        );
        out.sample("matryoshka_control_auth_failures_total", &[], auth.failures);
        out.family("matryoshka_control_auth_lockouts_total", "counter", "Peers locked out after repeated failures.");
        out.sample("matryoshka_control_auth_lockouts_total", &[], auth.lockouts);
        out.family("matryoshka_control_rate_limited_total", "counter", "Requests refused during a lockout.");
        out.sample("matryoshka_control_rate_limited_total", &[], auth.rate_limited);
    }
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExitCount;
    use alloc::vec;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn exits_appear_per_reason_and_level_and_host_families_only_for_the_admin() {
        let guest =
            GuestSummary { name: "web".into(), tenant: None, state: GuestState::Running, memory_mib: 2, vcpus: 1 };
        let stats = GuestStats {
            name: "web".into(),
            uptime_ms: 5_500,
            exits: vec![ExitCount { reason: "cpuid".into(), l1: 7, l2: 3 }],
            monitor_memory_bytes: 4096,
            ept02_pages: 9,
        };
        let text = render(&[(guest, Some(stats))], None);
        assert!(text.contains("matryoshka_guest_exits_total{guest=\"web\",reason=\"cpuid\",level=\"l1\"} 7\n"));
        assert!(text.contains("matryoshka_guest_exits_total{guest=\"web\",reason=\"cpuid\",level=\"l2\"} 3\n"));
        assert!(text.contains("matryoshka_guest_state{guest=\"web\",state=\"running\"} 1\n"));
        assert!(text.contains("matryoshka_guest_state{guest=\"web\",state=\"paused\"} 0\n"));
        assert!(text.contains("matryoshka_guest_memory_bytes{guest=\"web\"} 2097152\n"));
        assert!(text.contains("matryoshka_guest_uptime_seconds{guest=\"web\"} 5\n"));
        assert!(!text.contains("matryoshka_host"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("sample has a value");
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
    }
}
