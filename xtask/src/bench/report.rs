//! The table, the JSON and the SVG chart of a run, and the Markdown report.

use super::*;

pub(super) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

impl Results {
    pub(super) fn ok(&self, op: &str, backend: &str) -> Vec<f64> {
        self.samples
            .get(op)
            .and_then(|m| m.get(backend))
            .map(|v| v.iter().filter_map(|s| s.as_ref().ok().copied()).collect())
            .unwrap_or_default()
    }
    pub(super) fn median(&self, op: &str, backend: &str) -> Option<f64> {
        median(&self.ok(op, backend))
    }
    /// Why there is no figure (the last failure), if there is none.
    pub(super) fn why_na(&self, op: &str, backend: &str) -> Option<String> {
        let v = self.samples.get(op)?.get(backend)?;
        if v.iter().any(|s| s.is_ok()) {
            return None;
        }
        v.iter().rev().find_map(|s| s.as_ref().err().cloned())
    }
    /// Slowdown against native: >1 means slower, whichever way the unit goes.
    pub(super) fn ratio(&self, op: &Op, backend: &str) -> Option<f64> {
        if op.unit == "%" {
            return None;
        }
        let n = self.median(op.name, "native")?;
        let b = self.median(op.name, backend)?;
        if n <= 0.0 || b <= 0.0 {
            return None;
        }
        Some(match op.better {
            Better::Lower => b / n,
            Better::Higher => n / b,
        })
    }
    /// A DESIGN.md target as a slowdown against this run's native median.
    pub(super) fn target_ratio(&self, op: &Op, backend: &str) -> Option<f64> {
        let (skas, tt) = op.target?;
        let t = match backend {
            "tt" => tt,
            "skas" => skas,
            _ => return None,
        };
        let n = self.median(op.name, "native")?;
        if n <= 0.0 || t <= 0.0 || op.unit == "%" {
            return None;
        }
        Some(match op.better {
            Better::Lower => t / n,
            Better::Higher => n / t,
        })
    }
    pub(super) fn active(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().filter(|b| b.skipped.is_none())
    }
}

/// A raw value in a readable unit.
pub(super) fn show(op: &Op, v: f64) -> String {
    match op.unit {
        "ns" if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        "ns" if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        "ns" => format!("{:.2} µs", v / 1e3),
        // A slow bandwidth would read 0.00 GB/s.
        "MB/s" if v < 100.0 => format!("{v:.1} MB/s"),
        "MB/s" => format!("{:.2} GB/s", v / 1e3),
        "%" => format!("{v:.2} %"),
        "req/s" | "conn/s" => format!("{v:.0} {}", op.unit),
        "B" if v >= 1e4 => format!("{:.1} KB", v / 1e3),
        "B" => format!("{v:.0} B"),
        u => format!("{v:.3} {u}"),
    }
}

pub(super) fn show_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

/// Whether a median meets a target, and a word on by how much.
pub(super) fn verdict(op: &Op, v: f64, target: f64) -> String {
    let met = match op.better {
        Better::Lower => v <= target,
        Better::Higher => v >= target,
    };
    if met {
        "met".into()
    } else if op.unit == "%" {
        format!("missed by {:.2} points", v - target)
    } else {
        let f = match op.better {
            Better::Lower => v / target,
            Better::Higher => target / v,
        };
        format!("missed {}", show_ratio(f))
    }
}

/// The table: plain text for the terminal, or Markdown.
pub(super) fn table(res: &Results, markdown: bool) -> String {
    let backends: Vec<&Backend> = res.active().collect();
    let mut head = vec!["operation".to_string()];
    for b in &backends {
        head.push(b.name.to_string());
        if !b.native() {
            head.push(format!("{} ×native", b.name));
        }
    }
    for b in backends.iter().filter(|b| b.ours()) {
        head.push(format!("{} target", b.name));
    }
    let mut rows = vec![head];
    // With `--only`, the rows measured.
    for op in OPS.iter().filter(|o| res.samples.contains_key(o.name)) {
        let mut row = vec![op.label.to_string()];
        for b in &backends {
            row.push(match res.median(op.name, b.name) {
                Some(v) => show(op, v),
                None => "n/a".into(),
            });
            if !b.native() {
                row.push(
                    res.ratio(op, b.name)
                        .map(show_ratio)
                        .unwrap_or_else(|| "—".into()),
                );
            }
        }
        for b in backends.iter().filter(|b| b.ours()) {
            let t = op.target.map(|(s, t)| if b.name == "tt" { t } else { s });
            row.push(match (t, res.median(op.name, b.name)) {
                (None, _) => "—".into(),
                (Some(t), None) => format!("{}{}: n/a", cmp_sign(op), show(op, t)),
                (Some(t), Some(v)) => {
                    format!("{}{}: {}", cmp_sign(op), show(op, t), verdict(op, v, t))
                }
            });
        }
        rows.push(row);
    }
    let ncol = rows[0].len();
    let width: Vec<usize> = (0..ncol)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        if markdown {
            let _ = writeln!(s, "| {} |", r.join(" | "));
            if i == 0 {
                let _ = writeln!(s, "|{}", " --- |".repeat(ncol));
            }
        } else {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    let pad = width[c] - v.chars().count();
                    if c == 0 {
                        format!("{v}{}", " ".repeat(pad))
                    } else {
                        format!("{}{v}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(s, "{}", cells.join("  "));
        }
    }
    let mut na = Vec::new();
    for op in OPS {
        for b in &backends {
            if let Some(why) = res.why_na(op.name, b.name) {
                na.push(format!("{} under {}: {why}", op.name, b.name));
            }
        }
    }
    if !na.is_empty() {
        let _ = writeln!(s, "{}n/a:", if markdown { "\n" } else { "" });
        for l in na {
            let _ = writeln!(s, "{}{l}", if markdown { "- " } else { "  " });
        }
    }
    s
}

pub(super) fn cmp_sign(op: &Op) -> &'static str {
    match op.better {
        Better::Lower => "≤ ",
        Better::Higher => "≥ ",
    }
}

/// The raw samples, medians and ratios as JSON.
pub(super) fn to_json(res: &Results) -> String {
    use serde_json::{json, Map, Value};
    let num = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(Value::Null, Value::from);
    let backends: Vec<Value> = res.backends.iter().map(|b| json!({"name": b.name, "skipped": b.skipped})).collect();
    let operations: Vec<Value> = OPS
        .iter()
        .map(|op| {
            let results: Map<String, Value> = res
                .active()
                .map(|b| {
                    let samples: Vec<Value> = res
                        .samples
                        .get(op.name)
                        .and_then(|m| m.get(b.name))
                        .map(|v| v.iter().map(|x| num(x.as_ref().ok().copied())).collect())
                        .unwrap_or_default();
                    let r = json!({
                        "median": num(res.median(op.name, b.name)),
                        "ratio_to_native": num(res.ratio(op, b.name)),
                        "na": res.why_na(op.name, b.name),
                        "samples": samples,
                    });
                    (b.name.to_string(), r)
                })
                .collect();
            let better = if op.better == Better::Lower { "lower" } else { "higher" };
            json!({"name": op.name, "label": op.label, "unit": op.unit, "better": better, "results": results})
        })
        .collect();
    let j = json!({
        "date": res.date,
        "quick": res.quick,
        "reps": res.reps,
        "backends": backends,
        "notes": res.notes,
        "operations": operations,
    });
    serde_json::to_string_pretty(&j).unwrap_or_default() + "\n"
}

/// Bar chart of the ratio to native, log scale, one group per operation.
pub(super) fn svg_chart(res: &Results) -> String {
    let kernels: Vec<&Backend> = res.active().filter(|b| !b.native()).collect();
    let ops: Vec<&Op> = OPS
        .iter()
        .filter(|o| o.unit != "%" && res.samples.contains_key(o.name))
        .collect();
    let colors = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a"];
    let mut lo: f64 = 1.0;
    let mut hi: f64 = 10.0;
    for op in &ops {
        for b in &kernels {
            for r in [res.ratio(op, b.name), res.target_ratio(op, b.name)]
                .into_iter()
                .flatten()
            {
                lo = lo.min(r);
                hi = hi.max(r);
            }
        }
    }
    let (dlo, dhi) = (lo.log10().floor(), hi.log10().ceil());
    let (left, right, top, bar, gap) = (250.0, 150.0, 60.0, 16.0, 14.0);
    let plot_w = 560.0;
    let group = bar * kernels.len().max(1) as f64 + gap;
    let height = top + group * ops.len() as f64 + 70.0;
    let width = left + plot_w + right;
    let x = |r: f64| left + (r.log10() - dlo) / (dhi - dlo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">Slowdown against native (log scale; shorter is better)</text>"#,
        width / 2.0
    );
    // Grid: one line per power of ten.
    let mut d = dlo;
    while d <= dhi + 1e-9 {
        let gx = x(10f64.powf(d));
        let label = if d >= 0.0 {
            format!("{}×", 10f64.powf(d))
        } else {
            format!("{:.1}×", 10f64.powf(d))
        };
        let stroke = if d == 0.0 { "#000" } else { "#ccc" };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="dimgray">{label}</text>"#,
            height - 60.0,
            height - 44.0
        );
        d += 1.0;
    }
    // Value labels go last, over the target ticks.
    let mut labels = String::new();
    for (i, op) in ops.iter().enumerate() {
        let gy = top + group * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            gy + group / 2.0,
            xml_escape(op.label)
        );
        for (j, b) in kernels.iter().enumerate() {
            let y = gy + bar * j as f64 + gap / 2.0;
            match res.ratio(op, b.name) {
                Some(r) => {
                    let (x0, x1) = (x(1.0), x(r));
                    let (bx, bw) = if x1 >= x0 {
                        (x0, x1 - x0)
                    } else {
                        (x1, x0 - x1)
                    };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{bx:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                        bw.max(1.0),
                        bar - 2.0,
                        colors[j % colors.len()],
                        xml_escape(op.label),
                        b.name,
                        show_ratio(r),
                    );
                    let value = res
                        .median(op.name, b.name)
                        .map(|v| show(op, v))
                        .unwrap_or_default();
                    let _ = writeln!(
                        labels,
                        r#"<text x="{:.1}" y="{:.1}" font-size="11" stroke="white" stroke-width="3" paint-order="stroke">{} ({value})</text>"#,
                        x0.max(x1) + 4.0,
                        y + bar - 5.0,
                        show_ratio(r),
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="gray">{}: n/a</text>"#,
                        x(1.0) + 4.0,
                        y + bar - 5.0,
                        b.name
                    );
                }
            }
        }
    }
    // DESIGN.md targets: a black tick across each backend's bar.
    for (i, op) in ops.iter().enumerate() {
        let gy = top + group * i as f64;
        for (j, b) in kernels.iter().enumerate() {
            if let Some(t) = res.target_ratio(op, b.name) {
                let y = gy + bar * j as f64 + gap / 2.0;
                let tx = x(t);
                let _ = writeln!(
                    s,
                    r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="2"><title>{} target: {}</title></line>"#,
                    y - 1.0,
                    y + bar - 1.0,
                    b.name,
                    show_ratio(t)
                );
            }
        }
    }
    s.push_str(&labels);
    // Legend.
    for (j, b) in kernels.iter().enumerate() {
        let lx = left + 120.0 * j as f64;
        let ly = height - 24.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 10.0,
            colors[j % colors.len()],
            lx + 16.0,
            b.name
        );
    }
    let lx = left + 120.0 * kernels.len() as f64;
    let ly = height - 24.0;
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{ly:.1}" stroke="black" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">target, same scale</text>"#,
        lx + 6.0,
        ly - 11.0,
        lx + 6.0,
        lx + 16.0
    );
    s.push_str("</svg>\n");
    s
}

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(super) fn report(res: &Results, dir: &Path, command: &str) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let svg = dir.join("ratio.svg");
    fs::write(&svg, svg_chart(res)).map_err(|e| format!("write {}: {e}", svg.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# rustuml benchmark report\n");
    let _ = writeln!(
        md,
        "`{command}`, {} ({} repetitions per backend, interleaved; medians).\n",
        res.date, res.reps
    );
    let _ = writeln!(md, "![slowdown against native, log scale](ratio.svg)\n");
    md.push_str(&table(res, true));
    if !res.notes.is_empty() {
        md.push_str("\nNotes:\n");
        for n in &res.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(
        md,
        "\nTimes are per operation; bandwidths count the bytes moved (file: written + read). \
         \"×native\" is the slowdown against the native run of the same binary in the same run \
         (for bandwidths: native / backend). Idle CPU is the host CPU of a guest sleeping 1 s, \
         minus that of booting and running `hello`, as a percentage of one CPU."
    );
    let path = dir.join("README.md");
    fs::write(&path, md).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}
