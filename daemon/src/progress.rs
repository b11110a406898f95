//! Download progress as a bar on standard error (the engine reports, this
//! draws): installed by every binary that may fetch ONNX Runtime or a model.

use fovea_engine::supply::progress::{Reporter, Transfer, set_reporter};
use indicatif::{ProgressBar, ProgressStyle};

struct Bars;

impl Reporter for Bars {
    fn start(&self, label: &str, total: Option<u64>, at: u64) -> Box<dyn Transfer> {
        let bar = ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_string());
        bar.set_position(at);
        Box::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl Transfer for Bar {
    fn advance(&self, at: u64) {
        self.0.set_position(at);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Shows downloads as progress bars from now on.
pub fn install_bars() {
    set_reporter(Box::new(Bars));
}
