//! Downloads from a server on 127.0.0.1 (never the internet): files arrive verified and whole,
//! a corrupted mirror is refused with both checksums, a dropped connection or an earlier
//! partial file continues with a Range request, dead mirrors fall through to the next, and a
//! .tar.gz is unpacked only when every member checks out.

mod server;

use std::path::{Path, PathBuf};

use md5::Digest;

use depthprobe_download::{download, md5_file, present, sources, DataSet, Fetched, Member, Remote, Unpack};
use server::{Behaviour, Seen, Server};

/// Deterministic bytes that differ from file to file.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A mirror folder `<dir>/toy/` with three files, and the data set describing them.
fn toy(dir: &Path) -> DataSet {
    let folder = dir.join("toy");
    std::fs::create_dir_all(&folder).unwrap();
    let mut files = Vec::new();
    for (i, (name, n)) in
        [("a-images.gz", 300_000), ("a-labels.gz", 1_000), ("b-images.gz", 150_001)].iter().enumerate()
    {
        let p = folder.join(name);
        std::fs::write(&p, bytes(i as u64 + 1, *n)).unwrap();
        files.push(Remote { name: name.to_string(), md5: md5_file(&p).unwrap(), size: *n as u64 });
    }
    DataSet { name: "toy".into(), folder: "toy".into(), mirrors: vec![], files, unpack: Unpack::AsIs }
}

fn same_files(ds: &DataSet, mirror: &Path, root: &Path) {
    for f in &ds.files {
        let (a, b) = (mirror.join("toy").join(&f.name), root.join("toy").join(&f.name));
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{} differs", f.name);
    }
}

fn http_sources(ds: &DataSet, server: &Server) -> Vec<String> {
    sources(ds, Some(&server.url)).unwrap()
}

#[test]
fn fetches_verifies_and_places_every_file() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    let ds = toy(&mirror);
    let server = Server::start(mirror.clone(), Behaviour::default());
    let root = t.path().join("data");
    assert_eq!(download(&ds, &root, &http_sources(&ds, &server), true).unwrap(), Fetched::Downloaded);
    same_files(&ds, &mirror, &root);
    assert!(present(&ds, &root));
    assert!(!root.join(".download").exists(), "the staging folder is removed");
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.from.is_none()));
    // A second call checks and fetches nothing.
    assert_eq!(download(&ds, &root, &http_sources(&ds, &server), true).unwrap(), Fetched::AlreadyThere);
    assert_eq!(server.seen().len(), 3);
    // A file damaged in place is fetched again, and only it.
    let p = root.join("toy/a-labels.gz");
    let mut b = std::fs::read(&p).unwrap();
    b[10] ^= 1;
    std::fs::write(&p, b).unwrap();
    assert_eq!(download(&ds, &root, &http_sources(&ds, &server), true).unwrap(), Fetched::Downloaded);
    same_files(&ds, &mirror, &root);
    assert_eq!(server.seen().len(), 4);
    assert_eq!(server.seen()[3].path, "/toy/a-labels.gz");
}

#[test]
fn a_corrupted_mirror_is_refused_with_both_checksums_and_nothing_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    let ds = toy(&mirror);
    let bad = mirror.join("toy/b-images.gz");
    let mut b = std::fs::read(&bad).unwrap();
    b[77_777] ^= 0x40;
    std::fs::write(&bad, &b).unwrap();
    let got = md5_file(&bad).unwrap();
    let server = Server::start(mirror.clone(), Behaviour::default());
    let root = t.path().join("data");
    let e = format!("{:#}", download(&ds, &root, &http_sources(&ds, &server), true).unwrap_err());
    let want = &ds.files[2].md5;
    assert!(e.contains("toy/b-images.gz") && e.contains(want.as_str()) && e.contains(&got), "{e}");
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(!root.join("toy/b-images.gz").exists());
    assert!(!root.join(".download/toy/b-images.gz.part").exists(), "the bad bytes are deleted");
    // The good files before it are in place and verified.
    assert_eq!(
        std::fs::read(root.join("toy/a-images.gz")).unwrap(),
        std::fs::read(mirror.join("toy/a-images.gz")).unwrap()
    );
}

#[test]
fn a_connection_dropped_halfway_continues_with_a_range_request() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    let ds = toy(&mirror);
    let server = Server::start(mirror.clone(), Behaviour { drop_first_at: Some(0.5), ..Default::default() });
    let root = t.path().join("data");
    assert_eq!(download(&ds, &root, &http_sources(&ds, &server), true).unwrap(), Fetched::Downloaded);
    same_files(&ds, &mirror, &root);
    let seen = server.seen();
    for f in &ds.files {
        let path = format!("/toy/{}", f.name);
        let mine: Vec<&Seen> = seen.iter().filter(|s| s.path == path).collect();
        assert_eq!(mine.len(), 2, "{path}: {seen:?}");
        let half = mine[0].sent;
        assert!(half > 0 && half < f.size, "{path}: first response cut at {half}");
        assert_eq!(mine[1].from, Some(half), "{path}: the second request continues at the first one's end");
        assert_eq!(mine[1].sent, f.size - half, "{path}: no byte is fetched twice");
    }
}

#[test]
fn a_partial_file_from_an_earlier_run_is_continued() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    let ds = toy(&mirror);
    let root = t.path().join("data");
    let stage = root.join(".download/toy");
    std::fs::create_dir_all(&stage).unwrap();
    let full = std::fs::read(mirror.join("toy/a-images.gz")).unwrap();
    std::fs::write(stage.join("a-images.gz.part"), &full[..123_456]).unwrap();
    let server = Server::start(mirror.clone(), Behaviour::default());
    download(&ds, &root, &http_sources(&ds, &server), true).unwrap();
    same_files(&ds, &mirror, &root);
    let first = &server.seen()[0];
    assert_eq!((first.path.as_str(), first.from, first.sent), ("/toy/a-images.gz", Some(123_456), 300_000 - 123_456));

    // A server that ignores Range sends the whole file again; the result is still whole.
    let root2 = t.path().join("data2");
    std::fs::create_dir_all(root2.join(".download/toy")).unwrap();
    std::fs::write(root2.join(".download/toy/a-images.gz.part"), &full[..1_000]).unwrap();
    let plain = Server::start(mirror.clone(), Behaviour { ignore_range: true, ..Default::default() });
    download(&ds, &root2, &http_sources(&ds, &plain), true).unwrap();
    same_files(&ds, &mirror, &root2);

    // A partial file that is not a prefix of the real one is caught by the checksum and the
    // file fetched again whole.
    let root3 = t.path().join("data3");
    std::fs::create_dir_all(root3.join(".download/toy")).unwrap();
    std::fs::write(root3.join(".download/toy/a-images.gz.part"), vec![7u8; 5_000]).unwrap();
    let s3 = Server::start(mirror.clone(), Behaviour::default());
    download(&ds, &root3, &http_sources(&ds, &s3), true).unwrap();
    same_files(&ds, &mirror, &root3);
    let a: Vec<Seen> = s3.seen().into_iter().filter(|s| s.path == "/toy/a-images.gz").collect();
    assert_eq!(a.iter().map(|s| s.from).collect::<Vec<_>>(), vec![Some(5_000), None], "{a:?}");
}

#[test]
fn dead_mirrors_fall_through_to_the_next_and_file_urls_work() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    let ds = toy(&mirror);
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = Server::start(empty, Behaviour::default());
    // A port nobody listens on: bind, note it, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let good = Server::start(mirror.clone(), Behaviour::default());
    let list = format!("{dead}, {}, {}", missing.url, good.url);
    let root = t.path().join("data");
    download(&ds, &root, &sources(&ds, Some(&list)).unwrap(), true).unwrap();
    same_files(&ds, &mirror, &root);
    // A missing file is asked for once per mirror, not retried.
    assert_eq!(missing.seen().len(), 3, "{:?}", missing.seen());
    assert_eq!(good.seen().len(), 3);

    // All mirrors failing: the error names each.
    let root2 = t.path().join("data2");
    let e = format!(
        "{:#}",
        download(&ds, &root2, &sources(&ds, Some(&format!("{dead},{}", missing.url))).unwrap(), true).unwrap_err()
    );
    assert!(e.contains("toy/a-images.gz: could not be fetched") && e.contains("HTTP 404") && e.contains(&dead), "{e}");

    // file:// mirrors (air-gapped clusters, CI).
    let root3 = t.path().join("data3");
    let url = format!("file://{}", mirror.display());
    download(&ds, &root3, &sources(&ds, Some(&url)).unwrap(), true).unwrap();
    same_files(&ds, &mirror, &root3);

    for bad in ["ftp://x", "mirror/relative", "file://relative"] {
        let e = sources(&ds, Some(bad)).unwrap_err().to_string();
        assert!(e.contains("DEPTHPROBE_MIRROR") && e.contains(bad), "{e}");
    }
}

/// A .tar.gz with `dir/` members and extra entries that must not be written.
fn toy_archive(mirror: &Path, members: &[(&str, Vec<u8>)], extra: bool) -> PathBuf {
    let folder = mirror.join("arch");
    std::fs::create_dir_all(&folder).unwrap();
    let p = folder.join("toy.tar.gz");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    for (n, d) in members {
        add(&format!("toy-bin/{n}"), d);
    }
    if extra {
        add("toy-bin/readme.html", b"<html></html>");
        add("elsewhere/evil.bin", b"no");
    }
    tar.into_inner().unwrap().finish().unwrap();
    p
}

/// The data set whose official archive is `archive`, holding `members` under `toy-bin/`.
fn archive_set(archive: &Path, members: &[(&str, Vec<u8>)]) -> DataSet {
    let md5 = |d: &[u8]| format!("{:x}", md5::Md5::digest(d));
    DataSet {
        name: "arch".into(),
        folder: "arch".into(),
        mirrors: vec![],
        files: vec![Remote {
            name: "toy.tar.gz".into(),
            md5: md5_file(archive).unwrap(),
            size: std::fs::metadata(archive).unwrap().len(),
        }],
        unpack: Unpack::TarGz {
            dir: "toy-bin".into(),
            members: members
                .iter()
                .map(|(n, d)| Member { name: n.to_string(), md5: md5(d), size: d.len() as u64 })
                .collect(),
        },
    }
}

#[test]
fn an_archive_is_unpacked_only_when_every_member_checks_out() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    let members = [("x.bin", bytes(11, 40_000)), ("y.bin", bytes(12, 20_000))];
    let archive = toy_archive(&mirror, &members, true);
    let ds = archive_set(&archive, &members);
    let server = Server::start(mirror.clone(), Behaviour { drop_first_at: Some(0.3), ..Default::default() });
    let root = t.path().join("data");
    assert_eq!(download(&ds, &root, &http_sources(&ds, &server), true).unwrap(), Fetched::Downloaded);
    for (n, d) in &members {
        assert!(std::fs::read(root.join("toy-bin").join(n)).unwrap() == *d, "{n}");
    }
    assert!(root.join("toy-bin/readme.html").exists());
    assert!(!root.join("elsewhere").exists(), "only the data folder is written");
    assert!(!root.join(".download").exists(), "the archive is removed once unpacked");
    assert!(present(&ds, &root));

    // An archive whose member does not match: nothing is put in place.
    let mut wrong = ds.clone();
    if let Unpack::TarGz { members, .. } = &mut wrong.unpack {
        members[1].md5 = "0".repeat(32);
    }
    let root2 = t.path().join("data2");
    let e = format!("{:#}", download(&wrong, &root2, &http_sources(&ds, &server), true).unwrap_err());
    assert!(e.contains("toy-bin/y.bin: checksum mismatch") && e.contains(&"0".repeat(32)), "{e}");
    assert!(!root2.join("toy-bin").exists());
}

/// A mirror that packed the official files itself (another gzip level, another order, other
/// entries) serves an archive with another MD5 and size: it is accepted when every member matches
/// its published MD5, and refused, naming both archive checksums, when one does not.
#[test]
fn a_mirrors_own_packing_is_judged_by_its_members() {
    let t = tempfile::tempdir().unwrap();
    let official = t.path().join("official");
    let members = [("x.bin", bytes(21, 50_000)), ("y.bin", bytes(22, 30_000))];
    let archive = toy_archive(&official, &members, true);
    let ds = archive_set(&archive, &members);
    // The mirror's packing: members in the other order, no extra entries, a smaller file.
    let mirror = t.path().join("mirror");
    let swapped = [members[1].clone(), members[0].clone()];
    let repacked = toy_archive(&mirror, &swapped, false);
    let repacked_md5 = md5_file(&repacked).unwrap();
    assert_ne!(repacked_md5, md5_file(&archive).unwrap());
    assert_ne!(std::fs::metadata(&repacked).unwrap().len(), std::fs::metadata(&archive).unwrap().len());
    for behaviour in [Behaviour::default(), Behaviour { drop_first_at: Some(0.4), ..Default::default() }] {
        let server = Server::start(mirror.clone(), behaviour);
        let root = t.path().join(format!("data-{}", server.url.rsplit(':').next().unwrap()));
        assert_eq!(download(&ds, &root, &http_sources(&ds, &server), true).unwrap(), Fetched::Downloaded);
        for (n, d) in &members {
            assert!(std::fs::read(root.join("toy-bin").join(n)).unwrap() == *d, "{n}");
        }
        assert!(present(&ds, &root) && !root.join(".download").exists());
    }
    // file:// mirrors too.
    let root = t.path().join("data-file");
    download(&ds, &root, &sources(&ds, Some(&format!("file://{}", mirror.display()))).unwrap(), true).unwrap();
    assert!(present(&ds, &root));

    // A packing with one member changed is refused, and nothing is put in place.
    let bad_mirror = t.path().join("bad");
    let mut changed = members.clone();
    changed[0].1[7] ^= 1;
    let bad = toy_archive(&bad_mirror, &changed, false);
    let server = Server::start(bad_mirror, Behaviour::default());
    let root = t.path().join("data-bad");
    let e = format!("{:#}", download(&ds, &root, &http_sources(&ds, &server), true).unwrap_err());
    let (want, got) = (md5_file(&archive).unwrap(), md5_file(&bad).unwrap());
    assert!(e.contains(&format!("expected MD5 {want}, got {got}")), "{e}");
    assert!(e.contains("toy-bin/x.bin: checksum mismatch"), "{e}");
    assert!(!root.join("toy-bin").exists() && !root.join(".download/arch/toy.tar.gz.part").exists(), "{e}");
}
