//! The `receptor` command line, run as a real process against real files: every config
//! rule gives exit 1 with a message naming the file (or variable) and key at fault.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VALID: &str = r#"
[services.web.watchers.node1]
type = "dummy"
cfg = { name = "node1", host = "127.0.0.1", port = 80 }

[services.web.reactors.log]
type = "filelogger"
cfg = { filename = "/tmp/receptor_events.log", unbuffered = true }
"#;

/// A temporary directory holding a config file.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("Receptor.toml"), config).expect("write config");
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("Receptor.toml")
    }

    /// Runs `receptor <args>` in the fixture's directory with only the given RECEPTOR_* vars.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_receptor"));
        cmd.args(args).current_dir(self.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("RECEPTOR_") {
                cmd.env_remove(key);
            }
        }
        // The colour test must see the terminal check alone decide.
        cmd.env_remove("NO_COLOR");
        cmd.envs(env.iter().copied());
        cmd.output().expect("run receptor")
    }

    fn check(&self) -> Output {
        self.run(&["check", "-c", self.config().to_str().unwrap()], &[])
    }

    /// Adds a file to `plugins/` with the given mode.
    fn plugin_file(&self, name: &str, mode: u32) -> PathBuf {
        let dir = self.path().join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit 1 and that stderr names the config file and contains every `needle`.
fn assert_config_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

#[test]
fn valid_config_checks_with_a_summary() {
    let fx = Fixture::new(VALID);
    let out = fx.check();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("valid"), "{text}");
    assert!(
        text.contains("service web: 1 watcher(s), 1 reactor(s)"),
        "{text}"
    );
    assert!(text.contains("watcher node1: type dummy"), "{text}");
    assert!(
        text.contains("reactor filelogger: built-in (receptor plugin reactor filelogger)"),
        "{text}"
    );
}

#[test]
fn the_default_receptor_toml_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_receptor"))
        .args(["check", "-c"])
        .arg(root.join("Receptor.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}

#[test]
fn env_overrides_plugin_dir_and_nested_keys() {
    let fx = Fixture::new(VALID);
    let out = fx.run(
        &["check", "--print"],
        &[
            ("RECEPTOR_PLUGIN_DIR", "/x"),
            (
                "RECEPTOR_SERVICES__WEB__REACTORS__LOG__CFG__FILENAME",
                "/tmp/web.log",
            ),
            ("RECEPTOR_SHUTDOWN_TIMEOUT", "1m 30s"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("--print is JSON");
    assert_eq!(json["plugin_dir"], "/x");
    assert_eq!(
        json["services"]["web"]["reactors"]["log"]["cfg"]["filename"],
        "/tmp/web.log"
    );
    assert_eq!(
        json["services"]["web"]["reactors"]["log"]["cfg"]["unbuffered"],
        true
    );
    assert_eq!(json["shutdown_timeout"], "1m 30s");
}

#[test]
fn relative_plugin_dir_in_the_file_is_relative_to_the_file() {
    let fx = Fixture::new(&format!("plugin_dir = \"myplugins\"\n{VALID}"));
    let out = fx.run(
        &["check", "--print", "-c", fx.config().to_str().unwrap()],
        &[],
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        json["plugin_dir"],
        fx.path().join("myplugins").to_str().unwrap()
    );
}

#[test]
fn log_and_bench_variables_are_not_config_keys() {
    let fx = Fixture::new(VALID);
    let out = fx.run(
        &["check"],
        &[("RECEPTOR_LOG", "debug"), ("RECEPTOR_BENCH_QUICK", "1")],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}

#[test]
fn malformed_toml_names_file_and_line() {
    let fx = Fixture::new("plugin_dir = \"p\"\n\n[services.web\n");
    assert_config_error(&fx.check(), &["Receptor.toml:3:", "invalid TOML"]);
}

#[test]
fn missing_file_is_a_config_error() {
    let fx = Fixture::new(VALID);
    let out = fx.run(&["check", "-c", "nope.toml"], &[]);
    assert_config_error(
        &out,
        &["cannot read config file 'nope.toml'", "No such file"],
    );
}

#[test]
fn instance_without_type_names_the_key() {
    let fx = Fixture::new(
        "[services.web.watchers.a]\ncfg = {}\n[services.web.reactors.b]\ntype = \"filelogger\"\n",
    );
    assert_config_error(
        &fx.check(),
        &[
            "Receptor.toml",
            "services.web.watchers.a",
            "missing key 'type'",
        ],
    );
}

#[test]
fn type_name_outside_the_alphabet_is_refused() {
    let fx = Fixture::new("[services.web.watchers.a]\ntype = \"Dum my\"\n[services.web.reactors.b]\ntype = \"filelogger\"\n");
    assert_config_error(
        &fx.check(),
        &[
            "services.web.watchers.a.type",
            "invalid plugin type 'Dum my'",
        ],
    );
}

#[test]
fn unknown_type_names_the_executable_and_plugin_dir() {
    let fx = Fixture::new("[services.web.watchers.a]\ntype = \"consul\"\n[services.web.reactors.b]\ntype = \"filelogger\"\n");
    assert_config_error(
        &fx.check(),
        &[
            "services.web.watchers.a.type",
            "plugin type 'consul' not found",
            "receptor-watcher-consul",
            "plugin_dir",
        ],
    );
}

#[test]
fn plugin_file_not_executable_or_not_regular_has_its_own_message() {
    let fx = Fixture::new(
        "[services.web.watchers.a]\ntype = \"noexec\"\n[services.web.watchers.b]\ntype = \"dir\"\n\
         [services.web.reactors.c]\ntype = \"filelogger\"\n",
    );
    fx.plugin_file("receptor-watcher-noexec", 0o644);
    std::fs::create_dir_all(fx.path().join("plugins/receptor-watcher-dir")).unwrap();
    assert_config_error(
        &fx.check(),
        &["is not executable", "is not a regular file", "2 problems"],
    );
}

#[test]
fn executable_in_plugin_dir_serves_a_type_and_overrides_a_builtin() {
    let fx = Fixture::new(
        "[services.web.watchers.a]\ntype = \"etcd\"\n[services.web.watchers.b]\ntype = \"dummy\"\n\
         [services.web.reactors.c]\ntype = \"filelogger\"\n",
    );
    let etcd = fx.plugin_file("receptor-watcher-etcd", 0o755);
    let dummy = fx.plugin_file("receptor-watcher-dummy", 0o755);
    let out = fx.check();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("watcher etcd: {}", etcd.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("watcher dummy: {}", dummy.display())),
        "{text}"
    );

    let out = fx.run(&["plugins"], &[]);
    let text = stdout(&out);
    assert!(text.contains("etcd"), "{text}");
    assert!(text.contains("(overrides the built-in)"), "{text}");
}

#[test]
fn service_without_watchers_or_reactors_is_refused() {
    let fx = Fixture::new("[services.web.watchers.a]\ntype = \"dummy\"\n\n[services.api.reactors.b]\ntype = \"filelogger\"\n");
    assert_config_error(
        &fx.check(),
        &[
            "service 'web' has no reactors",
            "service 'api' has no watchers",
            "2 problems",
        ],
    );
}

#[test]
fn config_without_services_is_refused() {
    let fx = Fixture::new("plugin_dir = \"p\"\n");
    assert_config_error(&fx.check(), &["no services configured"]);
}

#[test]
fn unknown_top_level_key_is_refused() {
    let fx = Fixture::new(&format!("plugin_dri = \"x\"\n{VALID}"));
    assert_config_error(
        &fx.check(),
        &[
            "Receptor.toml",
            "key 'plugin_dri'",
            "unknown key",
            "plugin_dir",
        ],
    );
}

#[test]
fn unknown_key_from_the_environment_names_the_variable() {
    let fx = Fixture::new(VALID);
    let out = fx.run(
        &["check"],
        &[("RECEPTOR_SERVICES__WEB__WATCHERS__NODE1__TYPO", "x")],
    );
    assert_config_error(
        &out,
        &[
            "environment variable RECEPTOR_SERVICES__WEB__WATCHERS__NODE1__TYPO",
            "unknown key",
        ],
    );
}

#[test]
fn bad_value_from_the_environment_names_the_variable() {
    let fx = Fixture::new(VALID);
    let out = fx.run(&["check"], &[("RECEPTOR_SHUTDOWN_TIMEOUT", "soon")]);
    assert_config_error(
        &out,
        &[
            "environment variable RECEPTOR_SHUTDOWN_TIMEOUT",
            "invalid duration 'soon'",
        ],
    );
}

#[test]
fn cfg_must_be_a_table() {
    let fx = Fixture::new(&VALID.replace(
        "cfg = { name = \"node1\", host = \"127.0.0.1\", port = 80 }",
        "cfg = 5",
    ));
    assert_config_error(
        &fx.check(),
        &["services.web.watchers.node1.cfg", "must be a table"],
    );
}

#[test]
fn run_validates_before_anything_else() {
    let fx = Fixture::new("[services.web.watchers.a]\ntype = \"consul\"\n[services.web.reactors.b]\ntype = \"filelogger\"\n");
    let out = fx.run(&["run"], &[]);
    assert_config_error(&out, &["plugin type 'consul' not found"]);
}

#[test]
fn plugins_lists_the_builtins() {
    let fx = Fixture::new(VALID);
    let out = fx.run(&["plugins"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for (kind, name) in [
        ("watcher", "dummy"),
        ("watcher", "restapi"),
        ("watcher", "etcd"),
        ("watcher", "healthcheck"),
        ("reactor", "etcd"),
        ("reactor", "filelogger"),
        ("reactor", "webhook"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(kind) && l.contains(name) && l.contains("built-in")),
            "{kind} {name} missing: {text}"
        );
    }
}

/// Regression: a text log redirected to a file was full of ANSI colour codes.
#[test]
fn a_text_log_that_is_not_a_terminal_has_no_colour_codes() {
    let fx = Fixture::new(VALID);
    let out = fx.run(&["check"], &[("RECEPTOR_LOG", "debug")]);
    let err = stderr(&out);
    assert!(err.contains("configuration loaded"), "{err}");
    assert!(!err.contains('\u{1b}'), "escape sequences in {err:?}");
}

#[test]
fn json_log_format_writes_json_lines() {
    let fx = Fixture::new(VALID);
    let out = fx.run(
        &["--log-format", "json", "check"],
        &[("RECEPTOR_LOG", "debug")],
    );
    let err = stderr(&out);
    let first = err.lines().next().expect("a log line");
    let line: serde_json::Value = serde_json::from_str(first).expect("a JSON log line");
    assert_eq!(line["fields"]["message"], "configuration loaded");
}

#[test]
fn supervision_defaults_overrides_per_type_and_from_the_environment() {
    let fx = Fixture::new(&format!(
        r#"
[supervision]
max_restarts = 9
ping_interval = "250ms"

[supervision.watchers.dummy]
on_plugin_failure = "shutdown"
{VALID}"#
    ));
    let out = fx.run(
        &["check", "--print"],
        &[("RECEPTOR_SUPERVISION__RESTART_WINDOW", "2m")],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("--print is JSON");
    let sup = &json["supervision"];
    assert_eq!(sup["max_restarts"], 9);
    assert_eq!(sup["ping_interval"], "250ms");
    assert_eq!(sup["ping_timeout"], "5s", "defaults fill the rest");
    assert_eq!(sup["restart_window"], "2m");
    assert_eq!(sup["on_plugin_failure"], "isolate");
    let dummy = &sup["watchers"]["dummy"];
    assert_eq!(dummy["on_plugin_failure"], "shutdown");
    assert_eq!(
        dummy["max_restarts"], 9,
        "an override merges over the table"
    );
}

#[test]
fn bad_supervision_values_name_their_keys() {
    let fx = Fixture::new(&format!(
        r#"
[supervision]
ping_timeout = "never"
max_restarts = -1

[supervision.reactors.filelogger]
on_plugin_failure = "explode"
{VALID}"#
    ));
    assert_config_error(
        &fx.check(),
        &[
            "key 'supervision.ping_timeout'",
            "key 'supervision.max_restarts'",
            "key 'supervision.reactors.filelogger.on_plugin_failure'",
            "\"isolate\" or \"shutdown\"",
        ],
    );
}
