//! `fovea scan` end to end: shards merged equal the whole run, kill -9 then
//! the same command resumes to the same result, and `fovead --scan` serves
//! the strongest images with their field-of-view patches.

use fovea_client::{Client, v1 as pb};
use fovea_tests::{Daemon, bin, tiny_model_file};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn fovea(model: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("fovea"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--input-size",
            "64",
            "--ep",
            "cpu",
        ])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("fovea")
}

fn layers_of(path: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["layers"].clone()
}

fn images(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{i:03}.png")),
            fovea_engine::fixtures::test_image_png(50 + i % 17, 40 + i % 13),
        )
        .unwrap();
    }
}

#[test]
fn shards_merge_kill_and_resume_and_serving() {
    let (dir, model) = tiny_model_file();
    let data = dir.path().join("data");
    images(&data, 60);
    let d = data.to_str().unwrap();
    let out = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let whole = out("whole.json");
    let o = fovea(
        &model,
        &[
            "--json", "scan", d, "--out", &whole, "--k", "5", "--layers", "1..5", "--batch", "4",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["scanned"], 60);

    for i in 0..2 {
        let shard = format!("{i}/2");
        let o = fovea(
            &model,
            &[
                "scan",
                d,
                "--out",
                &out(&format!("s{i}.json")),
                "--k",
                "5",
                "--layers",
                "1..5",
                "--shard",
                &shard,
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let merged = out("merged.json");
    let o = Command::new(bin("fovea"))
        .args([
            "scan",
            "merge",
            &out("s1.json"),
            &out("s0.json"),
            "--out",
            &merged,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(layers_of(Path::new(&merged)), layers_of(Path::new(&whole)));

    // kill -9 mid-scan, then the same command finishes it.
    let resumed = out("resumed.json");
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--input-size",
        "64",
        "--ep",
        "cpu",
        "scan",
        d,
        "--out",
        &resumed,
        "--k",
        "5",
        "--layers",
        "1..5",
        "--batch",
        "2",
        "--checkpoint-secs",
        "0",
    ];
    let mut child = Command::new(bin("fovea"))
        .args(args)
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !Path::new(&resumed).exists() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let partial: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&resumed).unwrap()).unwrap();
    eprintln!("killed at {} of {}", partial["done"], partial["total"]);
    let o = Command::new(bin("fovea"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(layers_of(Path::new(&resumed)), layers_of(Path::new(&whole)));

    // The daemon serves the results.
    let daemon = Daemon::start(&[
        "--model",
        model.to_str().unwrap(),
        "--input-size",
        "64",
        "--ep",
        "cpu",
        "--scan",
        &whole,
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::connect(&daemon.addr).await.unwrap();
        c.wait_ready(Duration::from_secs(30)).await.unwrap();
        let top = c
            .scan_top(pb::ScanTopRequest {
                layer: "conv3_1".into(),
                feature: 3,
                k: 3,
                patches: Some(true),
            })
            .await
            .unwrap();
        assert_eq!(top.hits.len(), 3);
        assert_eq!(top.scanned, 60);
        assert!(top.hits.windows(2).all(|w| w[0].value >= w[1].value));
        for h in &top.hits {
            let b = h.fov.unwrap();
            let img = image::load_from_memory(&h.patch_png).unwrap();
            assert_eq!(
                (img.width() as i32, img.height() as i32),
                (b.x1 - b.x0, b.y1 - b.y0)
            );
        }
        let err = c
            .scan_top(pb::ScanTopRequest {
                layer: "conv3_1".into(),
                feature: 99,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
    });
}
