//! The `cosmic` binary, run as a user would: key files, images (sound, damaged, foreign) and a
//! store written by a real runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cosmic::prelude::*;
use serde_json::Value;

fn cosmic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmic"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cosmic binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing everything the command printed if it is not the one expected.
fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
    assert!(
        !stderr(output).contains("panicked"),
        "a panic: {}",
        stderr(output)
    );
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(output)))
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The public key printed on the `public key:` line.
fn printed_public_key(output: &Output) -> cosmic::PublicKey {
    let text = stdout(output);
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("public key:"))
        .unwrap_or_else(|| panic!("no public key line in:\n{text}"));
    line.trim().parse().expect("the printed key parses")
}

#[test]
fn keygen_writes_private_key_files_and_refuses_to_overwrite_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.key");
    let host = dir.path().join("host.key");

    let made = cosmic(&[
        "keygen",
        "--cluster-key",
        arg(&cluster),
        "--host-key",
        arg(&host),
    ]);
    expect_code(&made, 0);
    let public = printed_public_key(&made);
    assert_eq!(public.to_string().len(), 64);
    #[cfg(unix)]
    {
        assert_eq!(mode(&cluster), 0o600);
        assert_eq!(mode(&host), 0o600);
    }
    // The files are what the library loads (and it refuses key files others can read).
    cosmic::ClusterKey::from_file(&cluster).expect("the cluster key loads");
    let loaded = cosmic::HostKey::from_file(&host).expect("the host key loads");
    assert_eq!(loaded.public_key(), public);

    // Without --force, nothing is overwritten, even the file that is not there yet.
    let before = (
        std::fs::read(&cluster).unwrap(),
        std::fs::read(&host).unwrap(),
    );
    let other = dir.path().join("other.key");
    let refused = cosmic(&[
        "keygen",
        "--cluster-key",
        arg(&other),
        "--host-key",
        arg(&host),
    ]);
    expect_code(&refused, 1);
    assert!(
        stderr(&refused).contains("already exists") && stderr(&refused).contains("--force"),
        "{}",
        stderr(&refused)
    );
    assert!(!other.exists());
    assert_eq!(std::fs::read(&host).unwrap(), before.1);
    expect_code(&cosmic(&["keygen", "--cluster-key", arg(&cluster)]), 1);
    assert_eq!(std::fs::read(&cluster).unwrap(), before.0);

    // --force replaces them; --json says so.
    let forced = cosmic(&[
        "keygen",
        "--json",
        "--force",
        "--cluster-key",
        arg(&cluster),
        "--host-key",
        arg(&host),
    ]);
    expect_code(&forced, 0);
    let report = json(&forced);
    assert_eq!(report["cluster_key"]["replaced"], true);
    assert_eq!(report["host_key"]["replaced"], true);
    let new_public: cosmic::PublicKey = report["host_key"]["public_key"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_public, public);
    assert_eq!(
        cosmic::HostKey::from_file(&host).unwrap().public_key(),
        new_public
    );
    assert_ne!(std::fs::read(&cluster).unwrap(), before.0);
    #[cfg(unix)]
    {
        assert_eq!(mode(&cluster), 0o600);
        assert_eq!(mode(&host), 0o600);
    }

    // Either flag alone; neither is a usage error; no temporary file is left anywhere.
    let alone = dir.path().join("alone.key");
    expect_code(&cosmic(&["keygen", "--host-key", arg(&alone)]), 0);
    expect_code(&cosmic(&["keygen"]), 2);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["alone.key", "cluster.key", "host.key"]);
}

/// A task's state, as user code writes it.
#[derive(Migratable, Debug, Clone, PartialEq)]
#[migratable(version = 3)]
struct Counter {
    count: u64,
    limit: u64,
    label: String,
    samples: Vec<f64>,
}

#[async_trait]
impl Task for Counter {
    type Output = u64;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<u64>, TaskError> {
        if self.count == self.limit {
            return Ok(Step::Done(self.count));
        }
        self.count += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Step::Continue)
    }
}

fn counter(limit: u64) -> Counter {
    Counter {
        count: 0,
        limit,
        label: "cli test".into(),
        samples: (0..100).map(f64::from).collect(),
    }
}

/// Writes a captured `Counter` image; returns its path and bytes.
fn image_file(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let bytes = cosmic::image::capture(&counter(7)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn inspect_shows_the_header_of_a_sound_image() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = image_file(dir.path(), "counter.img");
    let header = cosmic::image::inspect(&bytes).unwrap();

    let shown = cosmic(&["inspect", arg(&path)]);
    expect_code(&shown, 0);
    let text = stdout(&shown);
    for expected in [
        format!("type:          {}", header.type_name),
        "type version:  3".to_owned(),
        format!("fingerprint:   {}", header.fingerprint),
        "encoding:      portable".to_owned(),
        format!("writer:        {}", cosmic::image::Arch::host()),
        format!("header size:   {} bytes", header.header_len),
        format!("body size:     {} bytes", header.body_len),
        format!("total size:    {} bytes", bytes.len()),
        "checksum:      ok".to_owned(),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }
    assert!(header.type_name.contains("Counter"), "{}", header.type_name);

    let shown = cosmic(&["inspect", "--json", arg(&path)]);
    expect_code(&shown, 0);
    let report = json(&shown);
    assert_eq!(report["type_name"], header.type_name.as_str());
    assert_eq!(report["type_version"], 3);
    assert_eq!(report["fingerprint"], header.fingerprint.to_string());
    assert_eq!(report["encoding"], "portable");
    assert_eq!(report["checksum"]["verdict"], "ok");
    assert_eq!(report["image_bytes"], bytes.len() as u64);
    assert_eq!(report["file_bytes"], bytes.len() as u64);
    assert_eq!(report["header_bytes"], header.header_len as u64);
    assert_eq!(report["body_bytes"], header.body_len);
    assert_eq!(
        report["writer"]["arch"],
        cosmic::image::Arch::host().to_string()
    );
    assert_eq!(report["writer"]["pointer_width"], usize::BITS);
    assert_eq!(report["versions"][&header.type_name], 3);
}

#[test]
fn inspect_names_damage_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = image_file(dir.path(), "sound.img");
    let header_len = cosmic::image::inspect(&bytes).unwrap().header_len;

    // A flipped bit in the body: the header is still shown, the checksum is not ok.
    let mut flipped = bytes.clone();
    flipped[header_len + 20] ^= 0x10;
    let path = dir.path().join("flipped.img");
    std::fs::write(&path, &flipped).unwrap();
    let shown = cosmic(&["inspect", arg(&path)]);
    expect_code(&shown, 1);
    assert!(stdout(&shown).contains("checksum:      MISMATCH"));
    assert!(stdout(&shown).contains("Counter"));
    assert!(
        stderr(&shown).contains("body checksum mismatch"),
        "{}",
        stderr(&shown)
    );
    let shown = cosmic(&["inspect", "--json", arg(&path)]);
    expect_code(&shown, 1);
    assert_eq!(json(&shown)["checksum"]["verdict"], "mismatch");

    // Cut in the body: the header is shown, the body is truncated.
    let path = dir.path().join("cut.img");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let shown = cosmic(&["inspect", "--json", arg(&path)]);
    expect_code(&shown, 1);
    let report = json(&shown);
    assert_eq!(report["checksum"]["verdict"], "truncated");
    assert_eq!(report["file_bytes"], bytes.len() as u64 - 10);
    assert!(stderr(&shown).contains("truncated"), "{}", stderr(&shown));

    // Cut in the header: nothing can be shown; one line says why.
    std::fs::write(&path, &bytes[..header_len / 2]).unwrap();
    let shown = cosmic(&["inspect", arg(&path)]);
    expect_code(&shown, 1);
    assert!(stdout(&shown).is_empty());
    let message = stderr(&shown);
    assert!(message.contains("truncated"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");

    // A damaged header.
    let mut broken = bytes.clone();
    broken[header_len - 10] ^= 1;
    std::fs::write(&path, &broken).unwrap();
    let shown = cosmic(&["inspect", arg(&path)]);
    expect_code(&shown, 1);
    assert!(stderr(&shown).contains("header checksum mismatch"));
}

#[test]
fn inspect_refuses_what_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    // Random-looking bytes (a fixed generator, so a failure replays).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.path().join("noise.bin");
    std::fs::write(&path, &noise).unwrap();
    let shown = cosmic(&["inspect", arg(&path)]);
    expect_code(&shown, 1);
    let message = stderr(&shown);
    assert!(message.contains("not a cosmic image"), "{message}");
    assert!(message.contains("noise.bin"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");

    // With --json a script finds the error on stdout too.
    let shown = cosmic(&["inspect", "--json", arg(&path)]);
    expect_code(&shown, 1);
    assert!(json(&shown)["error"]
        .as_str()
        .unwrap()
        .contains("not a cosmic image"));

    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let shown = cosmic(&["inspect", arg(&empty)]);
    expect_code(&shown, 1);
    assert!(stderr(&shown).contains("truncated"), "{}", stderr(&shown));

    let missing = dir.path().join("missing.img");
    let shown = cosmic(&["inspect", arg(&missing)]);
    expect_code(&shown, 1);
    assert!(stderr(&shown).contains("missing.img"));

    let shown = cosmic(&["inspect", arg(dir.path())]);
    expect_code(&shown, 1);
    assert!(stderr(&shown).contains("is a folder"));
}

/// Fills a store with a real runtime: one task stopped mid-run with checkpoints, one finished.
/// Returns their ids.
fn run_tasks_into(store: &Path) -> (cosmic::TaskId, cosmic::TaskId) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rt = cosmic::Runtime::builder()
            .host("alpha")
            .store(cosmic::FileStore::open(store).unwrap())
            .checkpoint(cosmic::Policy::every_steps(5))
            .register::<Counter>()
            .build()
            .await
            .unwrap();
        let running = rt.spawn(counter(u64::MAX)).await.unwrap();
        let finished = rt.spawn(counter(12)).await.unwrap();
        assert_eq!(finished.join().await.unwrap(), 12);
        while running.steps_completed() < 12 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let durable = running.checkpoint_now().await.unwrap();
        assert!(durable.steps >= 12);
        rt.shutdown().await;
        (running.id(), finished.id())
    })
}

#[test]
fn store_ls_lists_what_a_runtime_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (running, finished) = run_tasks_into(&store);
    let type_name = <Counter as cosmic::Migratable>::type_name().into_owned();

    let listed = cosmic(&["store", "ls", arg(&store)]);
    expect_code(&listed, 0);
    let text = stdout(&listed);
    assert!(text.contains("2 tasks"), "{text}");
    assert!(
        text.contains(&format!("task {running}: {type_name} (output u64)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("task {finished}: {type_name}")),
        "{text}"
    );
    assert!(text.contains("checkpoint   #"), "{text}");
    assert!(text.contains("completed, output `u64`"), "{text}");
    assert!(text.contains("never moved"), "{text}");

    let listed = cosmic(&["store", "ls", "--json", arg(&store)]);
    expect_code(&listed, 0);
    let report = json(&listed);
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let task = |id: cosmic::TaskId| {
        tasks
            .iter()
            .find(|task| task["id"] == id.to_string())
            .unwrap_or_else(|| panic!("no task {id} in {report}"))
    };
    let alive = task(running);
    assert_eq!(alive["type_name"], type_name.as_str());
    assert_eq!(alive["output_type"], "u64");
    assert!(alive["outcome"].is_null());
    assert_eq!(alive["epochs"].as_array().unwrap().len(), 0);
    let checkpoints = alive["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty(), "{alive}");
    let newest = checkpoints.last().unwrap();
    assert!(newest["steps"].as_u64().unwrap() >= 12, "{newest}");
    assert!(newest["bytes"].as_u64().unwrap() > 800, "{newest}");
    let done = task(finished);
    assert_eq!(done["outcome"]["result"], "completed");
    assert_eq!(done["outcome"]["output_type"], "u64");

    // The files `ls` names are images `inspect` knows.
    let file = newest["file"].as_str().unwrap();
    let shown = cosmic(&["inspect", "--json", file]);
    expect_code(&shown, 0);
    let report = json(&shown);
    assert_eq!(report["entry"]["kind"], "checkpoint");
    assert_eq!(report["entry"]["task"], running.to_string());
    assert_eq!(report["entry"]["steps"], newest["steps"]);
    assert_eq!(report["type_name"], type_name.as_str());
    let record = store.join(format!("tasks/{running}/task"));
    let shown = cosmic(&["inspect", arg(&record)]);
    expect_code(&shown, 0);
    assert!(
        stdout(&shown).contains(&format!(
            "record:        task of type `{type_name}`, output `u64`"
        )),
        "{}",
        stdout(&shown)
    );
    let outcome = store.join(format!("tasks/{finished}/outcome"));
    let shown = cosmic(&["inspect", "--json", arg(&outcome)]);
    expect_code(&shown, 0);
    let report = json(&shown);
    assert_eq!(report["entry"]["kind"], "outcome");
    assert_eq!(report["record"]["kind"], "outcome");
    assert_eq!(report["record"]["result"], "completed");
    assert_eq!(report["record"]["output_type"], "u64");

    // Epoch records (written here directly: migrations have tests of their own).
    let catalog = cosmic::checkpoint::Catalog::new(
        std::sync::Arc::new(cosmic::FileStore::open(&store).unwrap()),
        2,
    );
    let moved = cosmic::checkpoint::EpochRecord::Moved {
        to: "beta".into(),
        to_addr: "127.0.0.1:7002".into(),
        handoff: 0xfeed,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(catalog.put_epoch_record(running, 1, &moved))
        .unwrap();
    let listed = cosmic(&["store", "ls", arg(&store)]);
    expect_code(&listed, 0);
    assert!(
        stdout(&listed)
            .contains("epoch 1      moved to beta (127.0.0.1:7002), hand-off 000000000000feed"),
        "{}",
        stdout(&listed)
    );
    let listed = cosmic(&["store", "ls", "--json", arg(&store)]);
    let report = json(&listed);
    let alive = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["id"] == running.to_string())
        .unwrap();
    assert_eq!(alive["epochs"][0]["epoch"], 1);
    assert_eq!(alive["epochs"][0]["record"], "moved");
    assert_eq!(alive["epochs"][0]["to"], "beta");
    let epoch_file = store.join(format!("tasks/{running}/epoch/{:020}.moved", 1));
    let shown = cosmic(&["inspect", "--json", arg(&epoch_file)]);
    expect_code(&shown, 0);
    let report = json(&shown);
    assert_eq!(report["entry"]["kind"], "epoch_record");
    assert_eq!(report["record"]["kind"], "epoch");
    assert_eq!(report["record"]["to_addr"], "127.0.0.1:7002");

    // One task only.
    let listed = cosmic(&[
        "store",
        "ls",
        "--json",
        "--task",
        &finished.to_string(),
        arg(&store),
    ]);
    expect_code(&listed, 0);
    assert_eq!(json(&listed)["tasks"].as_array().unwrap().len(), 1);
    let listed = cosmic(&["store", "ls", "--task", "0000000000000001", arg(&store)]);
    expect_code(&listed, 1);
    assert!(stderr(&listed).contains("no task 0000000000000001"));

    // A damaged record is listed as a problem, and the listing exits 1.
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0xff;
    std::fs::write(&record, &bytes).unwrap();
    let listed = cosmic(&["store", "ls", arg(&store)]);
    expect_code(&listed, 1);
    assert!(stdout(&listed).contains("PROBLEM"), "{}", stdout(&listed));
    assert!(stderr(&listed).contains("1 record"), "{}", stderr(&listed));

    // Not a store.
    let listed = cosmic(&["store", "ls", arg(&dir.path().join("nowhere"))]);
    expect_code(&listed, 1);
    assert!(
        !dir.path().join("nowhere").exists(),
        "ls created the folder"
    );
}
