//! Download progress for a person or a log: indicatif bars when the
//! output is a terminal, else plain lines every 10% and at the end
//! ([`present::TenPercent`]), never escape sequences into a pipe or a
//! file. The renderer only: every word comes from [`present`].

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use p2p_state::client::node::DownloadLine;
use runtime_common::present;

/// Where progress goes.
#[derive(Clone, Copy)]
pub enum Out {
    Stdout,
    Stderr,
}

pub struct Progress {
    out: Out,
    bars: Option<(MultiProgress, BTreeMap<u64, ProgressBar>)>,
    plain: present::TenPercent,
}

impl Progress {
    pub fn new(out: Out) -> Self {
        let (terminal, target) = match out {
            Out::Stdout => (
                std::io::stdout().is_terminal(),
                ProgressDrawTarget::stdout(),
            ),
            Out::Stderr => (
                std::io::stderr().is_terminal(),
                ProgressDrawTarget::stderr(),
            ),
        };
        let bars = terminal.then(|| (MultiProgress::with_draw_target(target), BTreeMap::new()));
        Progress {
            out,
            bars,
            plain: present::TenPercent::default(),
        }
    }

    /// Shows the downloads' current state.
    pub fn update(&mut self, lines: &[DownloadLine]) {
        let Some((multi, bars)) = &mut self.bars else {
            for l in lines {
                if let Some(text) = self.plain.step(l) {
                    match self.out {
                        Out::Stdout => println!("{text}"),
                        Out::Stderr => eprintln!("{text}"),
                    }
                }
            }
            return;
        };
        for l in lines {
            let bar = bars.entry(l.dl).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template(present::DOWNLOAD_BAR_TEMPLATE)
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            if let Some(p) = &l.progress {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
            }
            bar.set_message(present::format_download(l));
        }
    }

    /// Leaves the bars' last state on screen.
    pub fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for b in bars.values() {
                b.abandon();
            }
        }
    }
}
