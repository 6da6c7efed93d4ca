//! A disk that really fills up under the embedded journal: the data dir is
//! a size-limited tmpfs, a filler file takes the rest of it, and the host
//! must keep serving reads, refuse writes honestly (nothing acknowledged
//! that is not durable), and take writes again by itself once the filler
//! is gone. Mounting needs root, as `make test` runs here; the test fails
//! (never skips) where it cannot mount.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use wasmstate_tests::guests::{COUNTER, MISBEHAVING};
use wasmstate_tests::server::{JournalKind, Options};
use wasmstate_tests::{Api, Reply, Server};

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot mount a tmpfs on {} (this test needs root)", dir.path().display());
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses more, then gives `leave` bytes
    /// of it back, and answers its path.
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // The last bytes a partial write left room for.
        while file.write(&[0]).is_ok_and(|n| n == 1) {}
        let len = file.metadata().expect("the filler's size").len();
        file.set_len(len.saturating_sub(leave)).expect("shrink the filler");
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A command refused while the disk is full: 503 with a `Retry-After`.
fn refused(reply: &Reply) -> bool {
    reply.status == 503 && reply.body["error"]["kind"] == "journal_unavailable" && reply.retry_after.is_some()
}

#[tokio::test]
async fn a_full_disk_keeps_reads_refuses_writes_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount("48m");
    let options = Options { journal: Some(JournalKind::Redb), ..Options::default() };
    let server = Server::start_with(disk.path(), &[], options).await.expect("server starts");
    let api = Api::new(server.base());
    api.deploy("counter", Path::new(COUNTER)).await;
    api.deploy("m", Path::new(MISBEHAVING)).await;
    api.invoke("counter", "c", "Increase", json!({"value": 1})).await.expect(200);

    // Room for a few more commands of 1 MiB of events, until the journal
    // cannot grow.
    let filler = disk.fill(3 << 20);
    let mut acknowledged = 0;
    let failed = loop {
        let reply = api.invoke("m", "big", "Flood", json!({"count": 1, "bytes": 1 << 20})).await;
        if reply.status != 200 {
            break reply;
        }
        acknowledged += 1;
        assert!(acknowledged < 64, "the disk never filled up");
    };
    // The command whose write hit the full disk failed (or, had another's
    // hit it first, was refused).
    let hit = failed.status == 500 && failed.body["error"]["kind"] == "internal";
    assert!(hit || refused(&failed), "{} {}", failed.status, failed.body);
    assert!(acknowledged >= 1, "the room left took a command before the disk was full");

    // Reads go on, answering exactly what was acknowledged.
    let events = api.get("/v1/services/counter/entities/c/events").await.expect(200);
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(api.position("m", "big").await.0, acknowledged);
    assert_eq!(api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"value": 1}));
    // Writes are refused at once, saying when to retry; health says why.
    for entity in ["c", "new"] {
        let reply = api.invoke("counter", entity, "Increase", json!({"value": 10})).await;
        assert!(refused(&reply), "{entity}: {} {}", reply.status, reply.body);
    }
    let (kind, _) = api.get("/healthz").await.expect_error(503);
    assert_eq!(kind, "journal_failed");
    api.get("/metrics").await.expect(200);

    // Space returns: the host takes writes again by itself.
    std::fs::remove_file(filler).expect("remove the filler");
    let healthy = api.eventually(Duration::from_secs(15), || async { api.get("/healthz").await.status == 200 }).await;
    assert!(healthy, "the journal takes writes again without a restart");
    assert_eq!(api.position("counter", "new").await, (0, 0), "nothing of the refused commands");
    assert_eq!(api.position("m", "big").await.0, acknowledged);
    api.invoke("counter", "c", "Increase", json!({"value": 2})).await.expect(200);
    assert_eq!(api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"value": 3}));

    // And what was acknowledged survives a restart.
    let server = server.restart().await.expect("server restarts");
    let api = Api::new(server.base());
    assert_eq!(api.invoke("counter", "c", "Get", json!({})).await.expect(200), json!({"value": 3}));
    assert_eq!(api.position("m", "big").await.0, acknowledged);
}
