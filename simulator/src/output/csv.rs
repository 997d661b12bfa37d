//! The reports as CSV, for spreadsheets and scripts: one row per client.
//!
//! The `csv` crate quotes fields with commas, quotes or line breaks in them, such as error
//! messages, so every row reads back as the same fields.

use loadgen::record::ClientRecord;

use crate::measure::sweep::SweepReport;
use crate::report::Report;

impl Report {
    /// One CSV row per client, with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = ::csv::Writer::from_writer(Vec::new());
        write_csv(&mut out, &self.clients, None);
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// The comparison of several reports as CSV: one row per client, with an `architecture`
/// column first.
pub fn compare_csv(reports: &[Report]) -> String {
    let mut out = ::csv::Writer::from_writer(Vec::new());
    for (i, report) in reports.iter().enumerate() {
        let arch = report.architecture.as_deref().unwrap_or(&report.target);
        write_csv_rows(&mut out, &report.clients, Some(arch), i == 0);
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn write_csv(out: &mut ::csv::Writer<Vec<u8>>, clients: &[ClientRecord], arch: Option<&str>) {
    write_csv_rows(out, clients, arch, true);
}

/// Writes the clients' rows (and the header, if asked). The `csv` crate quotes fields with
/// commas, quotes or line breaks in them, such as error messages.
fn write_csv_rows(
    out: &mut ::csv::Writer<Vec<u8>>,
    clients: &[ClientRecord],
    arch: Option<&str>,
    header: bool,
) {
    const HEADER: [&str; 11] = [
        "id",
        "outcome",
        "connect_us",
        "first_byte_us",
        "complete_us",
        "waited_us",
        "status",
        "server_thread",
        "served_requests",
        "failed_requests",
        "error",
    ];
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    if header {
        let mut row: Vec<&str> = arch.map(|_| "architecture").into_iter().collect();
        row.extend(HEADER);
        let _ = out.write_record(&row);
    }
    for c in clients {
        let mut row: Vec<String> = arch.map(str::to_owned).into_iter().collect();
        row.extend([
            c.id.to_string(),
            c.outcome.name().to_owned(),
            opt(c.connect_us),
            opt(c.first_byte_us),
            opt(c.complete_us),
            opt(c.waited_us),
            c.status.map(|s| s.to_string()).unwrap_or_default(),
            c.server_thread.clone().unwrap_or_default(),
            c.served_requests.to_string(),
            c.failed_requests.to_string(),
            c.error.clone().unwrap_or_default(),
        ]);
        let _ = out.write_record(&row);
    }
}

/// Sweeps as CSV: one row per step, with the target and architecture first.
pub fn sweep_csv(reports: &[SweepReport]) -> String {
    let mut out = ::csv::Writer::from_writer(Vec::new());
    let _ = out.write_record([
        "target",
        "architecture",
        "offered_per_second",
        "sent_per_second",
        "goodput_per_second",
        "in_time",
        "p50_us",
        "p99_us",
        "dropped",
        "timed_out",
        "errors",
        "meets_goal",
    ]);
    for report in reports {
        for s in &report.steps {
            let _ = out.write_record([
                report.target.clone(),
                report.architecture.clone().unwrap_or_default(),
                format!("{:.0}", s.offered_per_second),
                format!("{:.1}", s.sent_per_second),
                format!("{:.1}", s.goodput_per_second),
                format!("{:.4}", s.in_time),
                s.p50_us.to_string(),
                s.p99_us.to_string(),
                s.dropped.to_string(),
                s.timed_out.to_string(),
                s.errors.to_string(),
                s.meets_goal.to_string(),
            ]);
        }
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}
