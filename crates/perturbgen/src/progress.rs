//! Progress bars for long work. indicatif hides them by itself when stderr is not a terminal
//! (Snakemake logs, CI), so logs stay readable.
use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, message: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    pb
}
