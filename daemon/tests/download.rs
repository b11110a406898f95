//! The model download path against a real HTTP server on loopback: success,
//! checksum mismatch, truncated transfer, refused connection. A failed
//! download leaves the destination as it was.

use fovea_daemon::supply::{download, hex};
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
    download(&url, &sha, Some(body.len() as u64), &dest).expect("download");
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
    let err = download(&url, &"0".repeat(64), None, &dest).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_truncated_transfer_is_an_error_and_writes_nothing() {
    let (body, sha) = payload();
    let url = serve_once(body.len(), body[..body.len() / 2].to_vec());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let err = download(&url, &sha, Some(body.len() as u64), &dest).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("truncated"), "{msg}");
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
    )
    .unwrap_err();
    assert!(t.elapsed().as_secs() < 5, "{err}");
}
