//! The download path (the model, the CUDA wheels) against a real HTTP
//! server on loopback: success, checksum mismatch, truncated transfer and
//! its resumption by a range request, refused connection. A failed download
//! leaves the destination as it was.

use fovea_engine::supply::{download, hex};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;

/// Serves one HTTP response per connection: `declared` as Content-Length and
/// `body` as what is actually sent, then closes.
fn serve_once(declared: usize, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
            let _ = s.flush();
        }
    });
    format!("http://{addr}/vgg16.tar.gz")
}

fn payload() -> (Vec<u8>, String) {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = hex(&Sha256::digest(&body));
    (body, sha)
}

#[test]
fn a_good_download_is_written_whole() {
    let (body, sha) = payload();
    let url = serve_once(body.len(), body.clone());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    download(&url, &sha, Some(body.len() as u64), &dest, "m").expect("download");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn a_checksum_mismatch_leaves_the_cache_unchanged() {
    let (body, _) = payload();
    let url = serve_once(body.len(), body.clone());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    std::fs::write(&dest, b"previous").unwrap();
    let err = download(&url, &"0".repeat(64), None, &dest, "m").unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_truncated_transfer_is_an_error_and_the_next_try_resumes() {
    let (body, sha) = payload();
    let half = body.len() / 2;
    let url = serve_once(body.len(), body[..half].to_vec());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let err = download(&url, &sha, Some(body.len() as u64), &dest, "m").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("after {half} bytes")) && msg.contains("resumes"),
        "{msg}"
    );
    assert!(!dest.exists());
    let part = dir.path().join("model.bin.part");
    assert_eq!(std::fs::read(&part).unwrap(), &body[..half]);

    // The second try asks for the rest only, and the result is whole.
    let (url, asked) = serve_ranges(body.clone());
    download(&url, &sha, Some(body.len() as u64), &dest, "m").expect("resumed");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!part.exists());
    assert_eq!(
        asked.lock().unwrap().as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
}

#[test]
fn a_resumed_part_with_a_wrong_checksum_is_discarded() {
    let (body, sha) = payload();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let mut wrong = body[..1000].to_vec();
    wrong[0] ^= 0xff;
    std::fs::write(dir.path().join("model.bin.part"), &wrong).unwrap();
    let (url, _) = serve_ranges(body.clone());
    let err = download(&url, &sha, None, &dest, "m").unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // With nothing kept, the next try starts over and succeeds.
    let (url, _) = serve_ranges(body.clone());
    download(&url, &sha, None, &dest, "m").expect("fresh");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

/// Serves `body` once, honouring a `Range: bytes=N-` header with a 206;
/// records the range asked for.
fn serve_ranges(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::Mutex<Option<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = asked.clone();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let range = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("range: ")
                        .or_else(|| l.strip_prefix("Range: "))
                })
                .map(|r| r.trim().to_string());
            let from = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
                .unwrap_or(0);
            *seen.lock().unwrap() = range;
            let status = if from > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let rest = &body[from..];
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                rest.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(rest);
            let _ = s.flush();
        }
    });
    (format!("http://{addr}/w.whl"), asked)
}

#[test]
fn a_refused_connection_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let err = download(
        &format!("http://127.0.0.1:{port}/x"),
        &"0".repeat(64),
        None,
        &dir.path().join("m"),
        "m",
    )
    .unwrap_err();
    assert!(t.elapsed().as_secs() < 5, "{err}");
}

/// A zoo entry served from loopback: `--model NAME` downloads it once into
/// the cache, checks it, and then answers from the cache.
fn loopback_zoo(url: String, sha: &str, size: u64) -> fovea_engine::supply::ZooModel {
    fovea_engine::supply::ZooModel {
        name: "vgg19",
        url: Box::leak(url.into_boxed_str()),
        sha256: Box::leak(sha.to_string().into_boxed_str()),
        size,
        profile: fovea_engine::model::profile::ProfileName::Torchvision,
        file: "vgg19-7.onnx",
    }
}

#[test]
fn a_zoo_model_is_downloaded_once_then_served_from_the_cache() {
    use fovea_engine::supply::{ModelSource, resolve_zoo};
    let (body, sha) = payload();
    let cache = tempfile::tempdir().unwrap();
    let zoo = loopback_zoo(
        serve_once(body.len(), body.clone()),
        &sha,
        body.len() as u64,
    );
    // Without the cache and without downloads, the error says what to do.
    let err = resolve_zoo(&zoo, ModelSource::Package, cache.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("vgg19") && msg.contains("--model PATH"),
        "{msg}"
    );
    let (path, prov) = resolve_zoo(&zoo, ModelSource::Auto, cache.path()).expect("download");
    assert_eq!(prov.source, "download");
    assert_eq!(prov.sha256, sha);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    // The server is gone: the second resolution reads the cache.
    let (again, prov) = resolve_zoo(&zoo, ModelSource::Auto, cache.path()).expect("cached");
    assert_eq!((again, prov.source.as_str()), (path, "cache"));
}

#[test]
fn a_corrupt_zoo_download_is_refused_and_leaves_no_model() {
    use fovea_engine::supply::{ModelSource, resolve_zoo};
    let (body, sha) = payload();
    let mut wrong = body.clone();
    wrong[10] ^= 1;
    let cache = tempfile::tempdir().unwrap();
    let zoo = loopback_zoo(serve_once(wrong.len(), wrong), &sha, body.len() as u64);
    let err = resolve_zoo(&zoo, ModelSource::Download, cache.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("checksum mismatch") && msg.contains("vgg19"),
        "{msg}"
    );
    assert!(!cache.path().join("models").join("vgg19-7.onnx").exists());
}

/// Every zoo name resolves to its cache file and reports its own name.
#[test]
fn zoo_names_resolve_to_their_cache_files() {
    use fovea_engine::model::profile::ProfileName;
    use fovea_engine::supply::{ModelSource, ZOO_MODELS, model_name, resolve_model, zoo_profile};
    let cache = tempfile::tempdir().unwrap();
    let models = cache.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    for zoo in ZOO_MODELS {
        std::fs::write(models.join(zoo.file), zoo.name).unwrap();
        let (path, prov) = resolve_model(zoo.name, ModelSource::Auto, cache.path()).expect("zoo");
        assert_eq!(path, models.join(zoo.file));
        assert_eq!(
            (prov.source.as_str(), prov.origin.as_str()),
            ("cache", zoo.url)
        );
        assert_eq!(model_name(&prov), zoo.name);
        // The Caffe networks take BGR minus the mean, the others
        // torchvision's normalisation.
        let caffe = ["alexnet", "caffenet", "googlenet", "inception-v1"].contains(&zoo.name);
        let want = if caffe {
            ProfileName::Caffe
        } else {
            ProfileName::Torchvision
        };
        assert_eq!(zoo_profile(&prov), Some(want), "{}", zoo.name);
        assert!(zoo.url.ends_with(zoo.file) && zoo.sha256.len() == 64);
    }
    let err = resolve_model("vgg20", ModelSource::Auto, cache.path()).unwrap_err();
    assert!(err.to_string().contains("vgg19-bn"), "{err}");
}
