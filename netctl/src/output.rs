//! Human-readable output: aligned tables and `key: value` blocks.

use std::io::{self, Write};

use matryoshka_control::model::{GuestInfo, GuestList, GuestStats, HostInfo, NestedState};

/// Columns as wide as their widest cell, two spaces apart, the last one not padded.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line += cell;
            } else {
                line += &format!("{cell:<width$}  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

pub fn guest_table(out: &mut dyn Write, list: &GuestList) -> io::Result<()> {
    let rows: Vec<Vec<String>> = list
        .guests
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.tenant.clone().unwrap_or_else(|| "-".into()),
                g.state.to_string(),
                format!("{} MiB", g.memory_mib),
                g.vcpus.to_string(),
            ]
        })
        .collect();
    table(out, &["NAME", "TENANT", "STATE", "MEMORY", "VCPUS"], &rows)
}

pub fn guest_info(out: &mut dyn Write, info: &GuestInfo) -> io::Result<()> {
    let none = || "-".to_string();
    writeln!(out, "name:        {}", info.name)?;
    writeln!(out, "tenant:      {}", info.tenant.clone().unwrap_or_else(none))?;
    writeln!(out, "state:       {}", info.state)?;
    writeln!(out, "memory:      {} MiB", info.memory_mib)?;
    writeln!(out, "vcpus:       {}", info.vcpus)?;
    writeln!(out, "nestedhvm:   {}", u8::from(info.nested_hvm))?;
    writeln!(out, "kernel:      {}", info.kernel.clone().unwrap_or_else(none))?;
    writeln!(out, "initrd:      {}", info.initrd.clone().unwrap_or_else(none))?;
    writeln!(out, "uptime:      {}", duration(info.uptime_ms))?;
    if let Some(reason) = &info.stop_reason {
        writeln!(out, "stopped by:  {reason}")?;
    }
    writeln!(out, "config:")?;
    for line in info.config.lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

pub fn guest_stats(out: &mut dyn Write, stats: &GuestStats) -> io::Result<()> {
    writeln!(out, "guest:           {}", stats.name)?;
    writeln!(out, "uptime:          {}", duration(stats.uptime_ms))?;
    writeln!(out, "monitor memory:  {}", bytes(stats.monitor_memory_bytes))?;
    writeln!(out, "EPT02 pages:     {}", stats.ept02_pages)?;
    writeln!(out, "exits:           {} at L1, {} at L2", stats.exits_l1(), stats.exits_l2())?;
    if stats.exits.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut exits = stats.exits.clone();
    exits.sort_by(|a, b| (b.l1 + b.l2).cmp(&(a.l1 + a.l2)).then_with(|| a.reason.cmp(&b.reason)));
    let rows: Vec<Vec<String>> =
        exits.iter().map(|e| vec![e.reason.clone(), e.l1.to_string(), e.l2.to_string()]).collect();
    table(out, &["REASON", "L1", "L2"], &rows)
}

pub fn stats_table(out: &mut dyn Write, all: &[GuestStats]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.exits_l1().to_string(),
                s.exits_l2().to_string(),
                s.ept02_pages.to_string(),
                bytes(s.monitor_memory_bytes),
                duration(s.uptime_ms),
            ]
        })
        .collect();
    table(out, &["NAME", "EXITS-L1", "EXITS-L2", "EPT02-PAGES", "MONITOR-MEM", "UPTIME"], &rows)
}

pub fn nested_state(out: &mut dyn Write, state: &NestedState) -> io::Result<()> {
    writeln!(out, "guest: {} (nestedhvm={})", state.name, u8::from(state.nested_hvm))?;
    for vcpu in &state.vcpus {
        let vmcs12 = vcpu.current_vmcs12.map_or_else(|| "none".to_string(), |gpa| format!("{gpa:#x}"));
        writeln!(
            out,
            "vcpu {}: vmxon={} vmcs12={vmcs12} launched={} l2_active={}",
            vcpu.vcpu,
            u8::from(vcpu.vmxon),
            u8::from(vcpu.launched),
            u8::from(vcpu.l2_active)
        )?;
        for field in &vcpu.fields {
            writeln!(out, "    {:<32} {:#018x}", field.name, field.value)?;
        }
    }
    Ok(())
}

pub fn host_info(out: &mut dyn Write, host: &HostInfo) -> io::Result<()> {
    writeln!(out, "version:       {}", host.version)?;
    writeln!(out, "cpu:           {} {}", host.cpu_vendor, host.cpu_model)?;
    writeln!(out, "logical cpus:  {}", host.logical_cpus)?;
    writeln!(out, "vmx features:  {}", host.vmx_features.join(" "))?;
    writeln!(out, "memory:        {} free of {}", bytes(host.free_memory_bytes), bytes(host.total_memory_bytes))?;
    writeln!(out, "uptime:        {}", duration(host.uptime_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use matryoshka_control::model::{GuestState, GuestSummary};

    #[test]
    fn tables_align_columns_to_the_widest_cell() {
        let list = GuestList {
            guests: vec![
                GuestSummary { name: "a".into(), tenant: None, state: GuestState::Running, memory_mib: 64, vcpus: 1 },
                GuestSummary {
                    name: "longer-name".into(),
                    tenant: Some("acme".into()),
                    state: GuestState::Paused,
                    memory_mib: 1024,
                    vcpus: 2,
                },
            ],
        };
        let mut out = Vec::new();
        guest_table(&mut out, &list).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "NAME         TENANT  STATE    MEMORY    VCPUS\n\
             a            -       running  64 MiB    1\n\
             longer-name  acme    paused   1024 MiB  2\n"
        );
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 * 1024), "64.0 KiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(61_000), "1m01s");
        assert_eq!(duration(7_260_000), "2h01m");
    }
}
