//! The Dockerfile builds with the README's commands, and its runtime stage
//! is what scripts/check-image-layout.sh replays (no Docker engine here).

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_image_is_built_and_run_as_documented() {
    let dockerfile = read("Dockerfile");
    let readme = read("README.md");
    let test_script = read("scripts/test.sh");
    for command in [
        "./scripts/setup.sh",
        "cargo leptos build --release --precompress",
        "cargo build --release -p pubsub-cli",
    ] {
        assert!(
            dockerfile.contains(command),
            "the image builds with `{command}`"
        );
        assert!(
            test_script.contains(command.trim_start_matches("./")) || test_script.contains(command),
            "CI runs `{command}`"
        );
    }
    assert!(readme.contains("./scripts/test.sh") && readme.contains("./scripts/run.sh"));
    assert!(test_script.contains("./scripts/check-image-layout.sh"));
    for line in [
        "USER pubsub",
        "PUBSUB_ADDR=0.0.0.0:4000",
        "LEPTOS_SITE_ROOT=/app/site",
        "EXPOSE 4000",
        r#"CMD ["pubsub", "--server", "http://127.0.0.1:4000", "health"]"#,
        r#"ENTRYPOINT ["pubsub-server"]"#,
    ] {
        assert!(dockerfile.contains(line), "Dockerfile has `{line}`");
    }
    let compose = read("docker-compose.yml");
    assert!(compose.contains("build: .") && compose.contains("4000:4000"));
}
