//! PNG plots for the results people look at. plotters draws text through ab_glyph from a TTF
//! font registered at run time: `PGEN_FONT`, else the usual DejaVu/Liberation paths (Debian's
//! fonts-dejavu-core, which scripts/setup installs).
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a font once; errors say how to provide one.
pub fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates = std::env::var("PGEN_FONT").into_iter().chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                    return Ok(());
                }
            }
        }
        Err("no TTF font found for plots: install fonts-dejavu-core or set PGEN_FONT to a .ttf file".to_string())
    })
    .clone()
    .map_err(Error::Font)
}

pub fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(path, format!("cannot draw plot: {e}"))
}

/// Draws a PNG of `size` pixels to `path`, atomically: plotters picks the format from the file
/// extension, so it draws to a hidden `.png` beside the target and renames it.
pub fn draw_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    ensure_font()?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.png", std::process::id()));
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(plot_error(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A histogram of `values` (log10 axis when `log10`), one panel.
pub fn histogram_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    values: &[f64],
    log10: bool,
) -> std::result::Result<(), String> {
    let xs: Vec<f64> = values.iter().filter(|v| !log10 || **v > 0.0).map(|&v| if log10 { v.log10() } else { v }).collect();
    let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if xs.is_empty() { (0.0, 1.0) } else if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
    let bins = 40usize;
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for v in &xs {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, 0u32..ymax + ymax / 10 + 1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(if log10 { format!("log10 {x_label}") } else { x_label.to_string() })
        .y_desc("cells")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width, c)], BLUE.mix(0.6).filled())
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Horizontal bars, one per label, the label written at the bar's base.
pub fn bar_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    bars: &[(String, f64)],
) -> std::result::Result<(), String> {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-12);
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..max * 1.15, -0.5..n - 0.5)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .disable_y_mesh()
        .y_labels(0)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let y = i as f64;
            Rectangle::new([(0.0, y - 0.4), (*v, y + 0.4)], GREEN.mix(0.5).filled())
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (label, v))| {
            Text::new(format!("{label}  ({})", format_value(*v)), (max * 0.01, i as f64), ("sans-serif", 15).into_font())
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}
