//! Guest statistics read from `/proc`.

use std::path::Path;

use lobster_agent_proto::methods::{ConnectionStats, MemoryStats};

/// Milliseconds since boot (`/proc/uptime`).
pub fn uptime_ms(proc: &Path) -> u64 {
    std::fs::read_to_string(proc.join("uptime"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}

/// 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn load(proc: &Path) -> [f64; 3] {
    let text = std::fs::read_to_string(proc.join("loadavg")).unwrap_or_default();
    let mut it = text.split_whitespace().map(|w| w.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// Memory figures (`/proc/meminfo`).
pub fn memory(proc: &Path) -> MemoryStats {
    let text = std::fs::read_to_string(proc.join("meminfo")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    MemoryStats {
        total_kib: field("MemTotal"),
        available_kib: field("MemAvailable"),
        free_kib: field("MemFree"),
    }
}

/// TCP socket counts from `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn connections(proc: &Path, workload_port: Option<u16>) -> ConnectionStats {
    let mut stats = ConnectionStats {
        established: 0,
        workload: 0,
        listening: 0,
    };
    for table in ["net/tcp", "net/tcp6"] {
        let text = std::fs::read_to_string(proc.join(table)).unwrap_or_default();
        count_tcp_table(&text, workload_port, &mut stats);
    }
    stats
}

fn count_tcp_table(text: &str, workload_port: Option<u16>, stats: &mut ConnectionStats) {
    for row in text.lines().skip(1) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
            continue;
        };
        let port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        match *state {
            "01" => {
                stats.established += 1;
                if port.is_some() && port == workload_port {
                    stats.workload += 1;
                }
            }
            "0A" => stats.listening += 1,
            _ => {}
        }
    }
}

/// Resident memory of every process in process group `pgid`, in KiB.
pub fn group_rss_kib(proc: &Path, pgid: u32) -> u64 {
    let page_kib = 4; // x86_64 guests
    let Ok(entries) = std::fs::read_dir(proc) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command: state ppid pgrp ... rss is field 24.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let pgrp: u32 = f.get(2)?.parse().ok()?;
            let rss: u64 = f.get(21)?.parse().ok()?;
            (pgrp == pgid).then_some(rss * page_kib)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_table_counts_states_and_the_workload_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0600000A:2328 0500000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0600000A:0034 0500000A:C351 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0600000A:0034 0500000A:C352 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0000000000000000
";
        let mut s = ConnectionStats {
            established: 0,
            workload: 0,
            listening: 0,
        };
        count_tcp_table(table, Some(9000), &mut s);
        assert_eq!((s.established, s.workload, s.listening), (2, 1, 1));
    }

    #[test]
    fn this_host_has_plausible_figures() {
        let proc = Path::new("/proc");
        assert!(memory(proc).total_kib > 0);
        assert!(uptime_ms(proc) > 0);
        let own_pgid = nix::unistd::getpgrp().as_raw() as u32;
        assert!(group_rss_kib(proc, own_pgid) > 0);
    }
}
