//! Turning measurements into something a person reads: percentiles,
//! units, a Markdown table, and an SVG bar chart written by hand (a few
//! rectangles and labels do not need a plotting library).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The spread of a set of latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub count: usize,
}

impl Spread {
    /// Nearest-rank percentiles: p99 is a value some delivery really took.
    pub fn of(mut samples: Vec<Duration>) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        samples.sort_unstable();
        let rank = |percent: f64| {
            let rank = (percent / 100.0 * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Spread {
            p50: rank(50.0),
            p99: rank(99.0),
            max: samples[samples.len() - 1],
            count: samples.len(),
        }
    }

    /// `1.2 / 3.4 / 5.6 ms`.
    pub fn triple(&self) -> String {
        format!(
            "{} / {} / {}",
            millis(self.p50),
            millis(self.p99),
            millis(self.max)
        )
    }
}

/// `0.41 ms`, `12.3 ms`, `1,234 ms`.
pub fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms.round() as u64))
    }
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `512 B`, `7.9 KiB`, `23.4 MiB`.
pub fn bytes(n: f64) -> String {
    if n < 1024.0 {
        format!("{n:.0} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    }
}

/// A number with two significant decimals when small, none when large.
pub fn ratio(x: f64) -> String {
    if x >= 100.0 {
        thousands(x.round() as u64)
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |cells: Vec<&str>| format!("| {} |\n", cells.join(" | "));
    out += &line(header.to_vec());
    out += &line(header.iter().map(|_| "---").collect());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One bar of a chart.
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// What is written at the end of the bar.
    pub text: String,
    /// Bars of the same era share a colour.
    pub colour: usize,
}

/// One panel: a title and horizontal bars on a common scale.
pub struct Panel {
    pub title: String,
    pub bars: Vec<Bar>,
}

const COLOURS: [&str; 6] = [
    "#8c6bb1", "#e6862e", "#17a5a5", "#2b8cbe", "#41ab5d", "#d6604d",
];
const WIDTH: f64 = 760.0;
const LABEL_WIDTH: f64 = 190.0;
const VALUE_WIDTH: f64 = 130.0;
const ROW: f64 = 22.0;

/// Panels stacked one under the other, each with its own scale.
pub fn chart(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let mut body = String::new();
    let mut y = 56.0;
    for panel in panels {
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" class="panel">{}</text>"#,
            y + 14.0,
            escape(&panel.title)
        );
        y += 24.0;
        let top = panel.bars.iter().map(|bar| bar.value).fold(0.0, f64::max);
        let room = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 20.0;
        for bar in &panel.bars {
            let length = if top > 0.0 {
                (bar.value / top * room).max(1.0)
            } else {
                1.0
            };
            let colour = COLOURS[bar.colour % COLOURS.len()];
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" class="label">{}</text><rect x="{LABEL_WIDTH}" y="{}" width="{length:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}" class="value">{}</text>"#,
                LABEL_WIDTH - 8.0,
                y + 15.0,
                escape(&bar.label),
                y + 3.0,
                ROW - 6.0,
                LABEL_WIDTH + length + 6.0,
                y + 15.0,
                escape(&bar.text),
            );
            y += ROW;
        }
        y += 14.0;
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}" font-family="system-ui, sans-serif">
<style>
.title {{ font-size: 18px; font-weight: 600; }}
.subtitle {{ font-size: 12px; fill: #555; }}
.panel {{ font-size: 14px; font-weight: 600; }}
.label {{ font-size: 12px; text-anchor: end; }}
.value {{ font-size: 12px; fill: #333; }}
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" class="title">{}</text>
<text x="10" y="42" class="subtitle">{}</text>
{body}</svg>
"#,
        escape(title),
        escape(subtitle)
    )
}

/// Writes `file` under `dir`, creating it; returns the path for the message.
pub fn save(dir: &Path, file: &str, contents: &str) -> Result<String, String> {
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let path = dir.join(file);
    std::fs::write(&path, contents)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(path.display().to_string())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let spread = Spread::of((1..=100).map(ms).collect());
        assert_eq!(
            (spread.p50, spread.p99, spread.max),
            (ms(50), ms(99), ms(100))
        );
        let one = Spread::of(vec![ms(7)]);
        assert_eq!(
            (one.p50, one.p99, one.max, one.count),
            (ms(7), ms(7), ms(7), 1)
        );
        assert_eq!(Spread::of(Vec::new()).count, 0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(millis(Duration::from_micros(420)), "0.42 ms");
        assert_eq!(millis(ms(1_980)), "1,980 ms");
        assert_eq!(bytes(8.0 * 1024.0), "8.0 KiB");
    }

    #[test]
    fn the_chart_escapes_its_text() {
        let svg = chart(
            "a < b",
            "",
            &[Panel {
                title: "x & y".into(),
                bars: vec![Bar {
                    label: "02".into(),
                    value: 1.0,
                    text: "1".into(),
                    colour: 0,
                }],
            }],
        );
        assert!(svg.contains("a &lt; b") && svg.contains("x &amp; y"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
