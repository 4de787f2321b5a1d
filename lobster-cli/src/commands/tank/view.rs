//! What the dashboard shows: a pure function of an [`Overview`], the sort
//! order and the current time, rendered into a ratatui [`Buffer`] (so it is
//! tested without a terminal).

use std::cmp::{Ordering, Reverse};
use std::time::Duration;

use lobster_core::health::{HealthState, Overview, TenantOverview};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Widget};

/// The column rows are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Name, A to Z.
    Name,
    /// State, worst first (failed, degraded, recovering, unknown, unchecked,
    /// suspended, healthy).
    State,
    /// Memory used by the VMM process, most first.
    MemoryUsed,
    /// Uptime, longest first.
    Uptime,
}

impl SortKey {
    /// The next key in the cycle `s` walks.
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::State,
            SortKey::State => SortKey::MemoryUsed,
            SortKey::MemoryUsed => SortKey::Uptime,
            SortKey::Uptime => SortKey::Name,
        }
    }

    /// How the footer names it.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::State => "state",
            SortKey::MemoryUsed => "memory used",
            SortKey::Uptime => "uptime",
        }
    }
}

/// A sort order: a key and whether its natural order is reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// The column.
    pub key: SortKey,
    /// Reverse the key's natural order.
    pub reversed: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            key: SortKey::Name,
            reversed: false,
        }
    }
}

impl Sort {
    /// The tenants in this order (ties broken by name).
    pub fn apply<'a>(&self, tenants: &'a [TenantOverview]) -> Vec<&'a TenantOverview> {
        let mut rows: Vec<&TenantOverview> = tenants.iter().collect();
        rows.sort_by(|a, b| self.compare(a, b).then_with(|| a.name.cmp(&b.name)));
        if self.reversed {
            rows.reverse();
        }
        rows
    }

    fn compare(&self, a: &TenantOverview, b: &TenantOverview) -> Ordering {
        match self.key {
            SortKey::Name => Ordering::Equal,
            SortKey::State => severity(a.state).cmp(&severity(b.state)),
            // `Reverse(None)` sorts after every `Reverse(Some(_))`: unknown last.
            SortKey::MemoryUsed => Reverse(a.memory_used_mib).cmp(&Reverse(b.memory_used_mib)),
            SortKey::Uptime => Reverse(a.uptime_s).cmp(&Reverse(b.uptime_s)),
        }
    }
}

/// Lower is worse.
fn severity(state: Option<HealthState>) -> u8 {
    match state {
        Some(HealthState::Failed) => 0,
        Some(HealthState::Degraded) => 1,
        Some(HealthState::Recovering) => 2,
        Some(HealthState::Unknown) => 3,
        None => 4,
        Some(HealthState::Suspended) => 5,
        Some(HealthState::Healthy) => 6,
    }
}

/// One frame of the dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Dashboard<'a> {
    /// The host's name.
    pub hostname: &'a str,
    /// The domain tenants are routed under.
    pub domain: &'a str,
    /// The latest snapshot.
    pub overview: &'a Overview,
    /// Row order.
    pub sort: Sort,
    /// Now (ms since the Unix epoch): ages are measured against it.
    pub now_ms: u64,
    /// Time between refreshes.
    pub interval: Duration,
    /// Why the last refresh failed (the rows are then older).
    pub error: Option<&'a str>,
}

const COLUMNS: [&str; 10] = [
    "NAME",
    "STATUS",
    "STATE",
    "HEALTH",
    "IP",
    "PID",
    "VCPUS",
    "MEMORY",
    "UPTIME",
    "LAST EVENT",
];

impl Widget for &Dashboard<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [header, table, footer] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        Paragraph::new(self.header_lines()).render(header, buf);
        self.render_table(table, buf);
        Paragraph::new(self.footer_line()).render(footer, buf);
    }
}

impl Dashboard<'_> {
    fn header_lines(&self) -> Vec<Line<'static>> {
        let count = self.overview.tenants.len();
        let title = Line::from(vec![
            Span::styled("lobster tank", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  host {}  domain {}  {count} tenant{}",
                self.hostname,
                self.domain,
                if count == 1 { "" } else { "s" }
            )),
        ]);
        let watchdog = match &self.overview.watchdog {
            None => Line::styled("no watchdog running", Style::new().fg(Color::Yellow)),
            Some(w) => {
                let (liveness, style) = if w.alive {
                    ("alive", Style::new().fg(Color::Green))
                } else {
                    ("stale: process gone", Style::new().fg(Color::Red))
                };
                Line::from(vec![
                    Span::raw(format!("watchdog pid {} ", w.pid)),
                    Span::styled(liveness, style),
                    Span::raw(format!(
                        "  tick {}  last status {}",
                        w.tick,
                        ago(self.now_ms, w.updated_ms)
                    )),
                ])
            }
        };
        vec![title, watchdog]
    }

    fn render_table(&self, area: Rect, buf: &mut Buffer) {
        let rows = self.sort.apply(&self.overview.tenants);
        let header = Row::new(COLUMNS.iter().enumerate().map(|(i, name)| {
            let marker = match (self.sorted_column() == i, self.sort.reversed) {
                (false, _) => "",
                (true, false) => " ▼",
                (true, true) => " ▲",
            };
            Cell::from(format!("{name}{marker}"))
        }))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
        let name_width = rows.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let health_width = rows.iter().map(|t| t.health.len()).max().unwrap_or(0);
        let widths = [
            Constraint::Length(name_width.clamp(6, 32) as u16),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(health_width.clamp(8, 32) as u16),
            Constraint::Length(15),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(13),
            Constraint::Length(8),
            Constraint::Fill(1),
        ];
        let body: Vec<Row> = rows.iter().map(|t| self.row(t)).collect();
        let empty = body.is_empty();
        Table::new(body, widths)
            .header(header)
            .column_spacing(2)
            .render(area, buf);
        if empty {
            let [_, below] =
                Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(area);
            Paragraph::new("no tenants (lobsterd spawn <name> creates one)")
                .style(Style::new().fg(Color::DarkGray))
                .render(below, buf);
        }
    }

    fn sorted_column(&self) -> usize {
        match self.sort.key {
            SortKey::Name => 0,
            SortKey::State => 2,
            SortKey::MemoryUsed => 7,
            SortKey::Uptime => 8,
        }
    }

    fn row(&self, t: &TenantOverview) -> Row<'static> {
        let state = t.state.map_or("-", HealthState::as_str);
        let health_style = match t.health.as_str() {
            "ok" => Style::new().fg(Color::Green),
            "-" => Style::new(),
            _ => Style::new().fg(Color::Red),
        };
        let memory = match t.memory_used_mib {
            Some(used) => format!("{used}/{} MiB", t.memory_mib),
            None => format!("-/{} MiB", t.memory_mib),
        };
        let last_event = match (&t.last_event, t.last_event_ms) {
            (Some(event), Some(at)) => format!("{event} ({})", ago(self.now_ms, at)),
            (Some(event), None) => event.clone(),
            (None, _) => "-".into(),
        };
        Row::new([
            Cell::from(t.name.clone()),
            Cell::from(t.status.as_str()),
            Cell::from(state).style(state_style(t.state)),
            Cell::from(t.health.clone()).style(health_style),
            Cell::from(t.ip.to_string()),
            Cell::from(t.pid.map_or_else(|| "-".into(), |p| p.to_string())),
            Cell::from(t.vcpus.to_string()),
            Cell::from(memory),
            Cell::from(t.uptime_s.map_or_else(|| "-".into(), human_duration)),
            Cell::from(last_event),
        ])
    }

    fn footer_line(&self) -> Line<'static> {
        let keys = format!(
            "q quit  s sort: {}{}  r reverse  refresh every {}",
            self.sort.key.label(),
            if self.sort.reversed {
                " (reversed)"
            } else {
                ""
            },
            human_interval(self.interval),
        );
        match self.error {
            None => Line::styled(keys, Style::new().fg(Color::DarkGray)),
            Some(error) => Line::from(vec![
                Span::styled(
                    format!(
                        "refresh failed: {error}; rows from {}  ",
                        ago(self.now_ms, self.overview.taken_ms)
                    ),
                    Style::new().fg(Color::Red),
                ),
                Span::styled(keys, Style::new().fg(Color::DarkGray)),
            ]),
        }
    }
}

/// The colour of a state: healthy green, degraded and recovering yellow,
/// failed red.
pub fn state_style(state: Option<HealthState>) -> Style {
    match state {
        Some(HealthState::Healthy) => Style::new().fg(Color::Green),
        Some(HealthState::Degraded | HealthState::Recovering) => Style::new().fg(Color::Yellow),
        Some(HealthState::Failed) => Style::new().fg(Color::Red),
        Some(HealthState::Suspended) => Style::new().fg(Color::DarkGray),
        Some(HealthState::Unknown) | None => Style::new(),
    }
}

/// A duration for people: `45s`, `3m12s`, `2h05m`, `4d03h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if secs < 60 {
        format!("{s}s")
    } else if secs < 3600 {
        format!("{m}m{s:02}s")
    } else if secs < 86_400 {
        format!("{}h{m:02}m", secs / 3600)
    } else {
        format!("{d}d{h:02}h")
    }
}

/// How long ago `then_ms` was, e.g. `12s ago` (`just now` under a second,
/// also for clocks slightly ahead).
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    if secs == 0 {
        "just now".into()
    } else {
        format!("{} ago", human_duration(secs))
    }
}

fn human_interval(interval: Duration) -> String {
    let ms = interval.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use lobster_core::health::WatchdogInfo;
    use lobster_core::store::TenantStatus;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn tenant(
        name: &str,
        state: Option<HealthState>,
        used: Option<u64>,
        up: Option<u64>,
    ) -> TenantOverview {
        TenantOverview {
            name: name.into(),
            status: TenantStatus::Running,
            state,
            health: match state {
                Some(HealthState::Healthy) => "ok".into(),
                Some(_) => "net.tap".into(),
                None => "-".into(),
            },
            ip: Ipv4Addr::new(10, 231, 0, 2 + 4 * name.len() as u8),
            pid: up.map(|_| 4000 + name.len() as i32),
            vcpus: 2,
            memory_mib: 512,
            memory_used_mib: used,
            uptime_s: up,
            last_event: Some(format!("{name} repaired")),
            last_event_ms: Some(NOW - 75_000),
        }
    }

    fn overview(tenants: Vec<TenantOverview>, watchdog: Option<WatchdogInfo>) -> Overview {
        Overview {
            taken_ms: NOW,
            watchdog,
            tenants,
        }
    }

    fn fleet() -> Overview {
        overview(
            vec![
                tenant("alpha", Some(HealthState::Healthy), Some(300), Some(4000)),
                tenant("bravo", Some(HealthState::Failed), None, None),
                tenant("charlie", Some(HealthState::Degraded), Some(120), Some(30)),
                tenant("delta", None, Some(450), Some(192)),
            ],
            Some(WatchdogInfo {
                pid: 4242,
                alive: true,
                tick: 57,
                updated_ms: NOW - 2_000,
                repairs: Default::default(),
            }),
        )
    }

    /// Renders through ratatui's test backend, one string per screen line.
    fn screen(overview: &Overview, sort: Sort) -> (Vec<String>, Buffer) {
        let mut terminal = Terminal::new(TestBackend::new(150, 12)).unwrap();
        let dashboard = Dashboard {
            hostname: "box",
            domain: "lobster.test",
            overview,
            sort,
            now_ms: NOW,
            interval: Duration::from_secs(1),
            error: None,
        };
        terminal
            .draw(|frame| frame.render_widget(&dashboard, frame.area()))
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        let lines = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect();
        (lines, buffer)
    }

    fn row_order(lines: &[String]) -> Vec<String> {
        lines[4..]
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| ["alpha", "bravo", "charlie", "delta"].contains(w))
            .map(str::to_owned)
            .collect()
    }

    fn line_of<'a>(lines: &'a [String], name: &str) -> &'a str {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name} in\n{}", lines.join("\n")))
    }

    #[test]
    fn one_row_per_tenant_with_every_column() {
        let (lines, _) = screen(&fleet(), Sort::default());
        let text = lines.join("\n");
        assert!(
            lines[0].contains("host box  domain lobster.test  4 tenants"),
            "{text}"
        );
        assert!(
            lines[1].contains("watchdog pid 4242 alive  tick 57  last status 2s ago"),
            "{text}"
        );
        for column in COLUMNS {
            assert!(lines[3].contains(column), "{column} missing in {text}");
        }
        let alpha: Vec<&str> = line_of(&lines, "alpha").split_whitespace().collect();
        assert_eq!(
            alpha,
            [
                "alpha",
                "running",
                "healthy",
                "ok",
                "10.231.0.22",
                "4005",
                "2",
                "300/512",
                "MiB",
                "1h06m",
                "alpha",
                "repaired",
                "(1m15s",
                "ago)"
            ]
        );
        let bravo: Vec<&str> = line_of(&lines, "bravo").split_whitespace().collect();
        assert_eq!(
            &bravo[..8],
            [
                "bravo",
                "running",
                "failed",
                "net.tap",
                "10.231.0.22",
                "-",
                "2",
                "-/512"
            ]
        );
        assert_eq!(bravo[9], "-", "no uptime without a VM: {bravo:?}");
        let delta: Vec<&str> = line_of(&lines, "delta").split_whitespace().collect();
        assert_eq!(&delta[..4], ["delta", "running", "-", "-"]);
        assert!(line_of(&lines, "charlie").contains("30s"));
        assert!(lines
            .last()
            .unwrap()
            .contains("q quit  s sort: name  r reverse  refresh every 1s"));
    }

    #[test]
    fn the_state_column_is_coloured() {
        let (lines, buffer) = screen(&fleet(), Sort::default());
        let colour_of = |name: &str, state: &str| {
            let y = lines.iter().position(|l| l.starts_with(name)).unwrap();
            let x = lines[y].find(&format!(" {state}")).unwrap() + 1;
            buffer[(x as u16, y as u16)].fg
        };
        assert_eq!(colour_of("alpha", "healthy"), Color::Green);
        assert_eq!(colour_of("bravo", "failed"), Color::Red);
        assert_eq!(colour_of("charlie", "degraded"), Color::Yellow);
    }

    #[test]
    fn every_sort_key_orders_the_rows_and_reverses() {
        let all = fleet();
        let order = |key, reversed| row_order(&screen(&all, Sort { key, reversed }).0);
        assert_eq!(
            order(SortKey::Name, false),
            ["alpha", "bravo", "charlie", "delta"]
        );
        assert_eq!(
            order(SortKey::Name, true),
            ["delta", "charlie", "bravo", "alpha"]
        );
        assert_eq!(
            order(SortKey::State, false),
            ["bravo", "charlie", "delta", "alpha"]
        );
        assert_eq!(
            order(SortKey::MemoryUsed, false),
            ["delta", "alpha", "charlie", "bravo"]
        );
        assert_eq!(
            order(SortKey::Uptime, false),
            ["alpha", "delta", "charlie", "bravo"]
        );
        assert_eq!(
            order(SortKey::Uptime, true),
            ["bravo", "charlie", "delta", "alpha"]
        );
    }

    #[test]
    fn the_sort_key_cycles_through_four_columns_and_is_marked() {
        let mut key = SortKey::Name;
        let mut seen = vec![];
        for _ in 0..4 {
            seen.push(key);
            key = key.next();
        }
        assert_eq!(key, SortKey::Name);
        assert_eq!(
            seen,
            [
                SortKey::Name,
                SortKey::State,
                SortKey::MemoryUsed,
                SortKey::Uptime
            ]
        );
        let (lines, _) = screen(
            &fleet(),
            Sort {
                key: SortKey::MemoryUsed,
                reversed: true,
            },
        );
        assert!(lines[3].contains("MEMORY ▲"), "{}", lines[3]);
        assert!(lines
            .last()
            .unwrap()
            .contains("sort: memory used (reversed)"));
    }

    #[test]
    fn an_empty_host_says_so() {
        let (lines, _) = screen(&overview(vec![], None), Sort::default());
        let text = lines.join("\n");
        assert!(lines[0].contains("0 tenants"), "{text}");
        assert!(lines[3].contains("NAME"), "{text}");
        assert!(
            text.contains("no tenants (lobsterd spawn <name> creates one)"),
            "{text}"
        );
    }

    #[test]
    fn without_a_watchdog_the_header_says_so_and_states_are_dashes() {
        let mut all = fleet();
        all.watchdog = None;
        for t in &mut all.tenants {
            t.state = None;
            t.health = "-".into();
            t.last_event = None;
            t.last_event_ms = None;
        }
        let (lines, _) = screen(&all, Sort::default());
        assert_eq!(lines[1], "no watchdog running");
        let alpha: Vec<&str> = line_of(&lines, "alpha").split_whitespace().collect();
        assert_eq!(&alpha[2..4], ["-", "-"]);
        assert_eq!(alpha.last(), Some(&"-"));
    }

    #[test]
    fn a_dead_watchdog_is_stale() {
        let mut all = fleet();
        all.watchdog.as_mut().unwrap().alive = false;
        all.watchdog.as_mut().unwrap().updated_ms = NOW - 600_000;
        let (lines, _) = screen(&all, Sort::default());
        assert!(
            lines[1]
                .contains("watchdog pid 4242 stale: process gone  tick 57  last status 10m00s ago"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_failed_refresh_is_shown_with_the_age_of_the_rows() {
        let all = fleet();
        let mut terminal = Terminal::new(TestBackend::new(150, 12)).unwrap();
        let dashboard = Dashboard {
            hostname: "box",
            domain: "lobster.test",
            overview: &all,
            sort: Sort::default(),
            now_ms: NOW + 5_000,
            interval: Duration::from_millis(500),
            error: Some("registry: locked"),
        };
        terminal
            .draw(|frame| frame.render_widget(&dashboard, frame.area()))
            .unwrap();
        let last = (0..150)
            .map(|x| terminal.backend().buffer()[(x, 11)].symbol().to_owned())
            .collect::<String>();
        assert!(
            last.starts_with("refresh failed: registry: locked; rows from 5s ago  q quit"),
            "{last}"
        );
        assert!(last.contains("refresh every 500ms"));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(7500), "2h05m");
        assert_eq!(human_duration(86_400 * 4 + 3 * 3600 + 59), "4d03h");
        assert_eq!(ago(NOW, NOW - 999), "just now");
        assert_eq!(ago(NOW, NOW + 5_000), "just now");
        assert_eq!(ago(NOW, NOW - 61_000), "1m01s ago");
    }
}
