//! Runs `fovea-tui` in a real terminal (tmux) against the real `fovead` on
//! an ephemeral port (tiny model), types keys and reads the screen back.

use fovea_tests::{bin, tiny_daemon};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    /// Starts `cmd` in a detached 160x48 session. Panics, naming tmux, where
    /// it cannot run (`.ci/run` installs it).
    fn start(cmd: &str) -> Tmux {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = format!("fovea-test-{}-{n}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "160",
                "-y",
                "48",
                cmd,
            ])
            .status();
        match ok {
            Ok(s) if s.success() => Tmux { session },
            other => panic!(
                "this test drives the TUI in tmux, which could not start a session \
                 ({other:?}); install tmux (Debian: apt-get install tmux)"
            ),
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session.as_str()];
        args.extend(keys);
        assert!(
            Command::new("tmux")
                .args(&args)
                .status()
                .expect("send-keys")
                .success()
        );
    }

    /// Waits until the screen satisfies `f`.
    fn wait(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// `fovea-tui` (with `flags`) in tmux on a test image, against a fresh
/// tiny daemon.
fn tui_on_tiny_daemon(flags: &str) -> (Tmux, tempfile::TempDir, fovea_tests::Daemon) {
    let (dir, _model, d) = tiny_daemon();
    let image = dir.path().join("cat.png");
    std::fs::write(&image, fovea_engine::fixtures::test_image_png(64, 48)).unwrap();
    let cmd = format!(
        "{} --connect {} {flags} {}; echo FOVEA-TUI-EXITED $?; sleep 30",
        bin("fovea-tui").display(),
        d.addr,
        image.display()
    );
    (Tmux::start(&cmd), dir, d)
}

/// The selected row of the layer list.
fn selected_layer(screen: &str) -> Option<String> {
    screen.lines().find_map(|l| {
        l.split("│> ").nth(1).map(|rest| {
            rest.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
    })
}

#[test]
fn keys_move_through_layers_features_and_help() {
    let (t, _dir, d) = tui_on_tiny_daemon("--graphics blocks");
    // Opens on the last conv layer's strongest neuron, reconstructions drawn.
    let s = t.wait("the image to be recorded", |s| {
        s.contains("cat.png recorded") && s.contains("= ")
    });
    assert_eq!(selected_layer(&s).as_deref(), Some("5 conv3_1"), "{s}");
    assert!(s.contains("CPU"), "provider in the status bar:\n{s}");
    assert!(s.contains(&d.addr), "address in the status bar");

    t.keys(&["k"]);
    let s = t.wait("layer 4", |s| {
        selected_layer(s).as_deref() == Some("4 conv2_2")
    });
    assert!(s.contains("4 conv2_2 f"), "{s}");

    // l: next feature, shown in the activation map's title.
    let feature = |s: &str| {
        s.split("conv2_2 f")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    };
    let before = feature(&s);
    t.keys(&["l"]);
    t.wait("the next feature", |s| feature(s) != before);

    // Arrows move the location.
    t.keys(&["Right"]);
    t.wait("the location to move", |s| {
        s.contains(",") && feature(s).is_some()
    });

    t.keys(&["?"]);
    t.wait("the help overlay", |s| {
        s.contains("move focus between panels")
    });
    t.keys(&["Escape"]);
    t.wait("the help to close", |s| {
        !s.contains("move focus between panels")
    });

    t.keys(&["m"]);
    // On the tiny model it may finish between two looks at the screen.
    t.wait("a maximization step", |s| {
        s.contains("step ") || s.contains("maximization finished")
    });
    t.keys(&["x"]);
    t.wait("the cancellation", |s| {
        s.contains("maximization stopped") || s.contains("maximization finished")
    });

    t.keys(&["q"]);
    let s = t.wait("the exit", |s| s.contains("FOVEA-TUI-EXITED"));
    assert!(s.contains("FOVEA-TUI-EXITED 0"), "{s}");
}

#[test]
fn reconnects_and_records_again_when_the_daemon_returns() {
    let (dir, model) = fovea_tests::tiny_model_file();
    // A fixed port the second daemon can take over.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = fovea_tests::tiny_args(&model);
    args.extend(["--listen".to_string(), addr.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = fovea_tests::Daemon::start(&args);
    let image = dir.path().join("cat.png");
    std::fs::write(&image, fovea_engine::fixtures::test_image_png(64, 48)).unwrap();
    let cmd = format!(
        "{} --connect {addr} --graphics blocks {}; sleep 30",
        bin("fovea-tui").display(),
        image.display()
    );
    let t = Tmux::start(&cmd);
    t.wait("the image to be recorded", |s| {
        s.contains("cat.png recorded")
    });
    drop(first);
    t.keys(&["l"]);
    t.wait("the daemon to be missed", |s| {
        s.contains("daemon unreachable")
    });
    let second = fovea_tests::Daemon::start(&args);
    let s = t.wait("the image recorded again", |s| {
        s.contains("cat.png recorded") && !s.contains("unreachable")
    });
    assert!(second.wait_log("rpc", Duration::from_secs(10)), "{s}");
}

#[test]
fn the_first_key_counts_after_the_terminal_is_asked_what_it_draws() {
    // Default graphics: the terminal is queried, and tmux leaves part of the
    // query unanswered.
    let (t, _dir, _d) = tui_on_tiny_daemon("");
    t.wait("the image to be recorded", |s| {
        s.contains("cat.png recorded")
    });
    t.keys(&["?"]);
    t.wait("the help overlay on the first key", |s| {
        s.contains("move focus between panels")
    });
}

#[test]
fn without_an_image_the_shipped_sample_is_opened_and_o_offers_the_others() {
    let (_dir, _model, d) = tiny_daemon();
    let cmd = format!(
        "{} --connect {} --graphics blocks; sleep 30",
        bin("fovea-tui").display(),
        d.addr
    );
    let t = Tmux::start(&cmd);
    let s = t.wait("the sample to be recorded", |s| {
        s.contains("sample chelsea.png recorded")
    });
    assert!(s.contains("o opens another"), "{s}");
    t.keys(&["o"]);
    let s = t.wait("the samples to be offered", |s| {
        s.contains("astronaut.png") && s.contains("rocket.jpg")
    });
    assert!(s.contains("samples/chelsea.png"), "{s}");
}

#[test]
fn a_pinned_image_gives_the_layer_list_its_agreement_and_the_map_the_region() {
    let (t, dir, _d) = tui_on_tiny_daemon("--graphics blocks");
    std::fs::write(
        dir.path().join("dog.png"),
        fovea_engine::fixtures::test_image_png(41, 57),
    )
    .unwrap();
    t.wait("the image to be recorded", |s| {
        s.contains("cat.png recorded")
    });
    // The selected neuron's region along its gradient and a random line.
    t.wait("the region radius", |s| s.contains("region ∇"));
    t.keys(&["b"]);
    t.wait("the pin", |s| s.contains("cat.png pinned as B"));
    t.keys(&["o"]);
    t.wait("the prompt", |s| s.contains("open image"));
    t.keys(&["BSpace"; 7]);
    t.keys(&["dog.png", "Enter"]);
    let s = t.wait("the agreement with B", |s| {
        s.contains("dog.png recorded") && s.contains("=B in FOV tree")
    });
    // Each layer up to the neuron's has its agreement, a fraction.
    let row = s
        .lines()
        .find(|l| l.contains(" 1 conv1_1"))
        .unwrap_or_else(|| panic!("no layer 1 row:\n{s}"));
    let last = row
        .split('│')
        .find(|cell| cell.contains("conv1_1"))
        .and_then(|cell| cell.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no agreement on the row {row:?}"));
    assert!((0.0..=1.0).contains(&last), "{row}");
    // b on the open image pins it instead.
    t.keys(&["b"]);
    t.wait("the new pin", |s| s.contains("dog.png pinned as B"));
}

#[test]
fn a_shows_the_top_class_attribution_and_hides_it_again() {
    let (t, _dir, _d) = tui_on_tiny_daemon("--graphics blocks");
    t.wait("the image to be recorded", |s| {
        s.contains("cat.png recorded")
    });
    t.keys(&["a"]);
    let s = t.wait("the attribution", |s| {
        s.contains("attributed by Guided Grad-CAM at layer 5")
    });
    assert!(s.contains("a hides it"), "{s}");
    t.keys(&["a"]);
    t.wait("the attribution hidden", |s| {
        s.contains("attribution hidden; a shows it again")
    });
}
