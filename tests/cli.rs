//! The `tenzip` binary: file naming, overwrite rules, --rm, exit codes, JSON output, damaged input.

use crate::util::{fixtures_dir, listing, scratch_with, stderr, tenzip};

const FIXTURE: &str = "minilm-slice.bf16.safetensors";

#[test]
fn compress_then_decompress_restores_identical_bytes() {
    let (dir, name) = scratch_with(FIXTURE);
    let original = std::fs::read(dir.path().join(&name)).unwrap();
    let out = tenzip(dir.path(), &["compress", "-q", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "-q prints nothing");
    assert_eq!(
        listing(dir.path()),
        [name.clone(), format!("{name}.tzp")],
        "the input is kept"
    );

    std::fs::rename(dir.path().join(&name), dir.path().join("original")).unwrap();
    let out = tenzip(dir.path(), &["decompress", &format!("{name}.tzp")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), original);
}

#[test]
fn fast_files_restore_identical_bytes() {
    let (dir, name) = scratch_with(FIXTURE);
    let original = std::fs::read(dir.path().join(&name)).unwrap();
    let out = tenzip(
        dir.path(),
        &["compress", "-q", "--fast", "-o", "fast.tzp", &name],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tenzip(dir.path(), &["compress", "-q", "-o", "small.tzp", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let size = |file: &str| std::fs::metadata(dir.path().join(file)).unwrap().len();
    assert!(size("fast.tzp") >= size("small.tzp"));
    let out = tenzip(
        dir.path(),
        &["decompress", "-q", "-o", "restored", "fast.tzp"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.path().join("restored")).unwrap(),
        original
    );
}

#[test]
fn existing_outputs_are_kept_unless_forced() {
    let (dir, name) = scratch_with(FIXTURE);
    let packed = dir.path().join(format!("{name}.tzp"));
    std::fs::write(&packed, b"precious").unwrap();
    let out = tenzip(dir.path(), &["compress", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&packed).unwrap(), b"precious");

    let out = tenzip(dir.path(), &["compress", "-f", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(std::fs::read(&packed).unwrap(), b"precious");
    let out = tenzip(dir.path(), &["decompress", &format!("{name}.tzp")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the original is there: decompress refuses without -f"
    );
}

#[test]
fn rm_removes_inputs_only_after_success() {
    let (dir, name) = scratch_with(FIXTURE);
    let original = std::fs::read(dir.path().join(&name)).unwrap();
    let out = tenzip(dir.path(), &["compress", "--rm", "-o", "packed.tzp", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listing(dir.path()), ["packed.tzp"]);
    let out = tenzip(
        dir.path(),
        &["decompress", "--rm", "-o", "restored", "packed.tzp"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listing(dir.path()), ["restored"]);
    assert_eq!(
        std::fs::read(dir.path().join("restored")).unwrap(),
        original
    );
}

#[test]
fn json_summary_reports_sizes_and_ratio() {
    let (dir, name) = scratch_with(FIXTURE);
    let out = tenzip(dir.path(), &["compress", "--json", "-T", "2", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(summary["command"], "compress");
    assert_eq!(summary["ok"], true);
    let input = summary["input_bytes"].as_u64().unwrap();
    let output = summary["output_bytes"].as_u64().unwrap();
    assert_eq!(
        input,
        std::fs::metadata(fixtures_dir().join(FIXTURE))
            .unwrap()
            .len()
    );
    assert_eq!(
        output,
        std::fs::metadata(dir.path().join(format!("{name}.tzp")))
            .unwrap()
            .len()
    );
    assert!((summary["ratio"].as_f64().unwrap() - output as f64 / input as f64).abs() < 1e-9);
    assert!(summary["seconds"].as_f64().is_some());
}

#[test]
fn json_summary_lists_failures() {
    let (dir, name) = scratch_with(FIXTURE);
    std::fs::write(dir.path().join("notes.txt"), b"not a model").unwrap();
    let out = tenzip(dir.path(), &["compress", "--json", &name, "notes.txt"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["files"].as_array().unwrap().len(), 1);
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["input"], "notes.txt");
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("neither a safetensors nor a GGUF file"));
    // Nothing compressed prints plain zero seconds (an empty float sum is -0.0).
    let out = tenzip(dir.path(), &["compress", "--json", "notes.txt"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"seconds\": 0.0"), "{text}");
}

#[test]
fn inspect_lists_every_tensor() {
    let (dir, name) = scratch_with(FIXTURE);
    assert!(tenzip(dir.path(), &["compress", "-q", &name])
        .status
        .success());
    let out = tenzip(dir.path(), &["inspect", "--json", &format!("{name}.tzp")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let segments = report["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 7, "header + 6 tensors");
    let query = segments
        .iter()
        .find(|s| s["name"] == "encoder.layer.0.attention.self.query.weight")
        .unwrap();
    assert_eq!(query["dtype"], "BF16");
    assert_eq!(query["shape"], serde_json::json!([384, 384]));
    assert_eq!(query["bytes"], 384 * 384 * 2);
    // 384 rows are too few for a table per channel: the router keeps the flat split and says why.
    assert_eq!(query["layout"], "bf16-split");
    assert_eq!(
        query["route"],
        "dtype BF16, 384 channels: flat, rows and channels do not pay"
    );
    assert!(query["ratio"].as_f64().unwrap() < 0.8);
    let codings = query["codings"].as_object().unwrap();
    let coded_chunks: u64 = codings.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(coded_chunks, query["chunks"].as_u64().unwrap());
    for coding in codings.keys() {
        let (split, modes) = coding.split_once(' ').unwrap();
        let modes: Vec<&str> = modes.split('+').collect();
        match split {
            "fields" => assert_eq!(modes.len(), 2, "exponent and sign+mantissa: {coding}"),
            "channels" => assert_eq!(modes[..2], ["parts", "parts"], "{coding}"),
            other => panic!("split {other}"),
        }
        assert_ne!(modes[0], "raw", "exponents are always entropy-coded");
    }

    let table = tenzip(dir.path(), &["inspect", &format!("{name}.tzp")]);
    assert!(String::from_utf8_lossy(&table.stdout)
        .contains("encoder.layer.0.attention.self.query.weight"));
}

#[test]
fn damaged_files_fail_verify_and_leave_no_output() {
    let (dir, name) = scratch_with(FIXTURE);
    assert!(tenzip(dir.path(), &["compress", "-q", "--rm", &name])
        .status
        .success());
    let packed = dir.path().join(format!("{name}.tzp"));
    let mut bytes = std::fs::read(&packed).unwrap();
    bytes[1000] ^= 0x10;
    std::fs::write(&packed, &bytes).unwrap();

    let out = tenzip(dir.path(), &["verify", &format!("{name}.tzp")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{name}.tzp")),
        "the error names the file: {}",
        stderr(&out)
    );
    let out = tenzip(dir.path(), &["decompress", &format!("{name}.tzp")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        listing(dir.path()),
        [format!("{name}.tzp")],
        "no output, partial or final, is left"
    );
}

#[test]
fn invalid_safetensors_names_the_file_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0; 4]);
    std::fs::write(dir.path().join("bad.safetensors"), &file).unwrap();
    let out = tenzip(dir.path(), &["compress", "bad.safetensors"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("bad.safetensors") && message.contains("shape and dtype give 8 bytes"),
        "{message}"
    );
    assert_eq!(listing(dir.path()), ["bad.safetensors"]);

    let out = tenzip(dir.path(), &["compress", "--generic", "bad.safetensors"]);
    assert!(
        out.status.success(),
        "--generic stores anything: {}",
        stderr(&out)
    );
}

#[test]
fn one_failure_does_not_stop_the_other_files() {
    let (dir, name) = scratch_with(FIXTURE);
    let out = tenzip(dir.path(), &["compress", "missing.safetensors", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(dir.path().join(format!("{name}.tzp")).exists());
}

#[test]
fn bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(tenzip(dir.path(), &["compress"]).status.code(), Some(2));
    assert_eq!(tenzip(dir.path(), &["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        tenzip(dir.path(), &["compress", "--chunk-size", "12Q", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        tenzip(dir.path(), &["compress", "-o", "x.tzp", "a", "b"])
            .status
            .code(),
        Some(2)
    );
    let help = tenzip(dir.path(), &["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

#[cfg(unix)]
#[test]
fn outputs_keep_the_input_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, name) = scratch_with(FIXTURE);
    let input = dir.path().join(&name);
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(tenzip(dir.path(), &["compress", "-q", &name])
        .status
        .success());
    let mode = std::fs::metadata(dir.path().join(format!("{name}.tzp")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// Starts a long compression (2 GiB of sparse zeros, several seconds of work) and sends it `signal` once its
/// temporary output exists. Returns the folder, the exit status, or `None` where there is no `kill` command.
#[cfg(unix)]
fn interrupted_compression(signal: &str) -> Option<(tempfile::TempDir, std::process::ExitStatus)> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("zeros.bin");
    std::fs::File::create(&input)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenzip"))
        .current_dir(dir.path())
        .args(["compress", "--generic", "-q", "zeros.bin"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !listing(dir.path())
        .iter()
        .any(|name| name.ends_with(".partial"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no temporary output appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let Ok(killed) = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
    else {
        eprintln!("skipped: no kill command to send {signal} with");
        child.kill().unwrap();
        child.wait().unwrap();
        return None;
    };
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(
        std::fs::metadata(&input).unwrap().len(),
        2 << 30,
        "the input is untouched"
    );
    Some((dir, status))
}

/// A real SIGINT in the middle of a long compression: the input stays, and nothing is left behind, neither
/// under the final name nor under the temporary one.
#[cfg(unix)]
#[test]
fn an_interrupt_leaves_the_input_and_no_output() {
    let Some((dir, status)) = interrupted_compression("-INT") else {
        return;
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(listing(dir.path()), ["zeros.bin"]);
}

/// SIGKILL cannot be caught, so the temporary file stays; but no file ever has the final name before it is
/// complete.
#[cfg(unix)]
#[test]
fn a_kill_leaves_the_input_and_no_final_output() {
    let Some((dir, _)) = interrupted_compression("-KILL") else {
        return;
    };
    let names = listing(dir.path());
    assert!(
        !names.iter().any(|name| name == "zeros.bin.tzp"),
        "{names:?}"
    );
    assert!(names
        .iter()
        .all(|name| name == "zeros.bin" || name.ends_with(".partial")));
}

#[test]
fn analyze_measures_fields_and_draws_pictures() {
    let (dir, name) = scratch_with(FIXTURE);
    let out = tenzip(dir.path(), &["analyze", "--json", "--plot", "plots", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bf16 = &report["dtypes"][0];
    assert_eq!(bf16["dtype"], "BF16");
    assert!(bf16["ratio"].as_f64().unwrap() < 0.8);
    assert!(bf16["limit_ratio"].as_f64().unwrap() <= bf16["ratio"].as_f64().unwrap());
    let exponent = report["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dtype"] == "BF16" && f["stream"] == "bits 14..7")
        .unwrap();
    assert!(exponent["entropy_bits"].as_f64().unwrap() < 4.0);
    let plots = report["plots"].as_array().unwrap();
    assert_eq!(
        plots.len(),
        2,
        "BF16 exponents and ratio per tensor: {plots:?}"
    );
    for plot in plots {
        let svg = std::fs::read_to_string(dir.path().join(plot.as_str().unwrap())).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
    assert!(
        !listing(dir.path()).iter().any(|n| n.ends_with(".tzp")),
        "nothing written"
    );
}

#[test]
fn each_error_is_told_once() {
    let (dir, name) = scratch_with(FIXTURE);
    let out = tenzip(dir.path(), &["compress", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let packed = std::fs::read(dir.path().join(format!("{name}.tzp"))).unwrap();
    std::fs::write(dir.path().join("cut.tzp"), &packed[..packed.len() / 2]).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a model").unwrap();
    // Each message names its file and says what is wrong, with the cause's own words, exactly once: errors
    // that also reported their causes as sources were printed two or three times over by the chain. An
    // output folder that does not exist is named, not the temporary file that could not be made in it.
    for (args, what) in [
        (vec!["compress", name.as_str()], "already exists"),
        (vec!["decompress", "cut.tzp"], "footer is missing"),
        (
            vec!["compress", "notes.txt"],
            "neither a safetensors nor a GGUF file",
        ),
        (vec!["decompress", "missing.tzp"], "(os error 2)"),
        (
            vec!["compress", "-o", "nowhere/out.tzp", name.as_str()],
            "cannot create a file in nowhere: ",
        ),
    ] {
        let out = tenzip(dir.path(), &args);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert_eq!(message.matches(what).count(), 1, "{args:?}: {message}");
    }
}
