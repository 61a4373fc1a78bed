//! A small HTTP/1.1 file server on 127.0.0.1 for download tests: serves a folder, honours
//! `Range: bytes=N-`, and can misbehave on purpose (drop the connection halfway through a
//! file's first response, ignore ranges). It records every request.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Behaviour {
    /// Send only this fraction of the body of the first response for each path, then close.
    pub drop_first_at: Option<f64>,
    /// Answer every request with the whole file (200), whatever its Range says.
    pub ignore_range: bool,
}

/// One request as the server saw it: the path and the first byte asked for (None: no Range).
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub path: String,
    pub from: Option<u64>,
    /// Body bytes actually sent.
    pub sent: u64,
}

pub struct Server {
    pub url: String,
    pub log: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn start(root: PathBuf, behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, b, log) = (root.clone(), behaviour.clone(), l2.clone());
                std::thread::spawn(move || serve(stream, &root, &b, &log));
            }
        });
        Server { url, log }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, root: &std::path::Path, b: &Behaviour, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut from = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range: bytes=") {
            from = r.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let file = root.join(path.trim_start_matches('/'));
    let Ok(body) = std::fs::read(&file) else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        log.lock().unwrap().push(Seen { path, from, sent: 0 });
        return;
    };
    let first_for_path = !log.lock().unwrap().iter().any(|s| s.path == path);
    let start = if b.ignore_range { 0 } else { from.unwrap_or(0).min(body.len() as u64) as usize };
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
    };
    let mut end = body.len();
    if let (Some(frac), true) = (b.drop_first_at, first_for_path) {
        end = start + ((body.len() - start) as f64 * frac) as usize;
    }
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body[start..end]);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
    log.lock().unwrap().push(Seen { path, from, sent: (end - start) as u64 });
}
