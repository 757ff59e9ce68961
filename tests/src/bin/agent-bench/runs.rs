//! A run's figures and their summary over the runs: each figure's min / median / max, printed
//! as one Markdown table, with the machine's load before each run and after the last.

use std::time::Duration;

/// The unit a figure is kept and printed in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Requests per second.
    PerSecond,
    /// Wake-ups per second.
    WakeUps,
    /// Mebibytes.
    MiB,
    /// One figure over another.
    Ratio,
}

impl Unit {
    /// `value` in this unit, as the table prints it.
    fn format(self, value: f64) -> String {
        match self {
            Unit::Ms => format!("{value:.2} ms"),
            Unit::PerSecond => format!("{value:.0}/s"),
            Unit::WakeUps => format!("{value:.2}/s"),
            Unit::MiB => format!("{value:.1} MiB"),
            Unit::Ratio => format!("×{value:.2}"),
        }
    }
}

/// One figure of a run: a measure's statistic, as the summary's row names it.
pub struct Figure {
    /// The row: measure and statistic, e.g. "card pulled → `session_ended`, p50".
    pub measure: String,
    /// The target it is read against; empty when none.
    pub target: &'static str,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
}

/// The statistics of a set of timings that a measure keeps.
#[derive(Clone, Copy)]
pub enum Stat {
    /// The median.
    P50,
    /// The 99th percentile.
    P99,
    /// The slowest.
    Max,
}

impl Stat {
    /// Its name in a row.
    pub fn name(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P99 => "p99",
            Stat::Max => "max",
        }
    }
}

/// The figures of one run and the machine's load when it began.
pub struct RunFigures {
    /// `/proc/loadavg` before the run, see [`load_average`].
    pub load: String,
    /// Its figures, in the order the summary lists them.
    pub figures: Vec<Figure>,
}

impl RunFigures {
    /// No figures yet; the load is read now.
    pub fn new() -> Self {
        Self {
            load: load_average(),
            figures: Vec::new(),
        }
    }

    /// Adds one figure.
    pub fn add(
        &mut self,
        measure: impl Into<String>,
        target: &'static str,
        value: f64,
        unit: Unit,
    ) {
        self.figures.push(Figure {
            measure: measure.into(),
            target,
            value,
            unit,
        });
    }

    /// Adds `stats` of `times` under `measure` (the target on the first), in milliseconds.
    pub fn add_times(
        &mut self,
        measure: &str,
        target: &'static str,
        times: &[Duration],
        stats: &[Stat],
    ) {
        for (i, &stat) in stats.iter().enumerate() {
            let target = if i == 0 { target } else { "" };
            let value = percentile(times, stat);
            self.add(
                format!("{measure}, {}", stat.name()),
                target,
                value,
                Unit::Ms,
            );
        }
    }

    /// The run's figures that have a target, on one line.
    pub fn brief(&self) -> String {
        let parts: Vec<String> = self
            .figures
            .iter()
            .filter(|figure| !figure.target.is_empty())
            .map(|figure| format!("{} {}", figure.measure, figure.unit.format(figure.value)))
            .collect();
        parts.join("; ")
    }
}

/// `stat` of `times`, in milliseconds (0 when there are none).
pub fn percentile(times: &[Duration], stat: Stat) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort();
    let q = match stat {
        Stat::P50 => 0.5,
        Stat::P99 => 0.99,
        Stat::Max => 1.0,
    };
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The load averages over 1, 5 and 15 minutes, and the CPUs: the figures are read with it.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let averages: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{} on {cpus} CPUs", averages.join(" "))
}

/// Prints each figure's min / median / max over `runs` as a Markdown table, rows in the order
/// of the first run, then one row per program in `absent` ("not installed"), then the loads.
pub fn summarise(runs: &[RunFigures], absent: &[(&str, &str)], load_after: &str) {
    println!();
    println!("summary over {} run(s): min / median / max", runs.len());
    println!();
    println!("| measure | target | min | median | max |");
    println!("|---|---|---|---|---|");
    let mut rows: Vec<&Figure> = Vec::new();
    for figure in runs.iter().flat_map(|run| &run.figures) {
        if !rows.iter().any(|row| row.measure == figure.measure) {
            rows.push(figure);
        }
    }
    for row in rows {
        let mut values: Vec<f64> = runs
            .iter()
            .flat_map(|run| &run.figures)
            .filter(|figure| figure.measure == row.measure)
            .map(|figure| figure.value)
            .collect();
        values.sort_by(f64::total_cmp);
        let median = if values.len() % 2 == 1 {
            values[values.len() / 2]
        } else {
            (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
        };
        let [min, max] = [values[0], values[values.len() - 1]];
        println!(
            "| {} | {} | {} | {} | {} |",
            row.measure,
            row.target,
            row.unit.format(min),
            row.unit.format(median),
            row.unit.format(max),
        );
    }
    for (program, hint) in absent {
        println!("| {program} | | not installed ({hint}) | | |");
    }
    println!();
    for (i, run) in runs.iter().enumerate() {
        println!("load before run {}: {}", i + 1, run.load);
    }
    println!("load after the last: {load_after}");
}
